"""Client mistakes that used to come back as 5xx / INTERNAL / UNKNOWN: each is now 400 / INVALID_ARGUMENT
with a message saying what is wrong, over HTTP and gRPC, and the server carries on serving.

Shapes numpy cannot hold (more than 64 dimensions, [0, 2**62]), BYTES data nested 1,000 arrays
deep in JSON, a repository load of '.' or '..', and bytes that are not a protobuf message of the RPC.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelport.protocol import service_pb2 as pb
from support.models import small_models
from support.server import ServerProcess, running_server

SERVICE = "/inference.GRPCInferenceService/"
TOO_MANY_DIMS = "input 'INPUT0' has 65 dimensions; at most 64 are supported"
TOO_LARGE = "byte size for tensor 'INPUT0' exceeds maximum size of 9223372036854775807"
NOT_PROTOBUF = "failed to parse the request protobuf message: Error parsing message with type"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("mistakes_repo")
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    log = tmp_path_factory.mktemp("logs") / "mistakes.log"
    args = ["--model-control-mode=explicit", "--load-model=add_sub", "--load-model=string_identity"]
    with running_server(repo, log, args, grpc=True) as proc:
        yield proc


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as chan:
        yield chan


@pytest.fixture(autouse=True)
def still_serving(server: ServerProcess) -> Iterator[None]:
    """After every mistake the server still answers a valid request on both protocols."""
    yield
    data = np.ones((1, 16), dtype=np.float32)
    with httpclient.InferenceServerClient(server.http_url) as http:
        inputs = [httpclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
        for inp in inputs:
            inp.set_data_from_numpy(data)
        assert http.infer("add_sub", inputs).as_numpy("OUTPUT0") is not None
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_live()


def infer(raw: httpx.Client, model: str, doc: dict[str, Any] | bytes, blob: bytes = b"") -> httpx.Response:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"Inference-Header-Content-Length": str(len(body))} if blob else {}
    return raw.post(f"/v2/models/{model}/infer", content=body + blob, headers=headers)


def assert_400(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"], response.json()


def grpc_failure(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30)
    return info.value


def fp32_input(shape: list[int], **fields: Any) -> dict[str, Any]:
    return {"name": "INPUT0", "datatype": "FP32", "shape": shape, **fields}


class TestShapes:
    def test_65_dimensions_over_http(self, raw: httpx.Client) -> None:
        assert_400(infer(raw, "add_sub", {"inputs": [fp32_input([1] * 65, data=[1.0])]}), TOO_MANY_DIMS)
        params = {"binary_data_size": 4}
        response = infer(raw, "add_sub", {"inputs": [fp32_input([1] * 65, parameters=params)]}, b"\0" * 4)
        assert_400(response, TOO_MANY_DIMS)

    @pytest.mark.parametrize("typed", [True, False])
    def test_65_dimensions_over_grpc(self, server: ServerProcess, typed: bool) -> None:
        # numpy cannot build such an array, so tritonclient cannot send it: the stub sends the message.
        msg = pb.ModelInferRequest(model_name="add_sub")
        tensor = msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1] * 65)
        if typed:
            tensor.contents.fp32_contents.append(1.0)
        else:
            msg.raw_input_contents.append(b"\0" * 4)
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            error = grpc_failure(client._client_stub.ModelInfer, msg)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, TOO_MANY_DIMS)

    def test_a_shape_too_large_even_for_no_elements(self, raw: httpx.Client, server: ServerProcess) -> None:
        assert_400(infer(raw, "add_sub", {"inputs": [fp32_input([0, 2**62], data=[])]}), TOO_LARGE)
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            msg = pb.ModelInferRequest(model_name="add_sub", raw_input_contents=[b""])
            msg.inputs.add(name="INPUT0", datatype="FP32", shape=[0, 2**62])
            error = grpc_failure(client._client_stub.ModelInfer, msg)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(TOO_LARGE)

    def test_an_element_count_past_int64(self, raw: httpx.Client) -> None:
        response = infer(raw, "add_sub", {"inputs": [fp32_input([2**62, 2**62], data=[])]})
        assert_400(response, "element count for tensor 'INPUT0' exceeds maximum size of 9223372036854775807")


def test_bytes_data_nested_1000_deep(raw: httpx.Client) -> None:
    data = "[" * 1000 + '"a"' + "]" * 1000
    body = ('{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1,1],"data":' + data + "}]}").encode()
    assert_400(infer(raw, "string_identity", body), "JSON nesting depth exceeds maximum allowed limit (100)")


class TestRepositoryNames:
    @pytest.mark.parametrize("name", ["..", "."])
    def test_http_load(self, raw: httpx.Client, name: str) -> None:
        encoded = name.replace(".", "%2E")  # clients normalise a literal '..' path segment away
        response = raw.post(f"/v2/repository/models/{encoded}/load")
        assert_400(response, f"failed to load '{name}': a model name must be one folder name")

    @pytest.mark.parametrize("name", ["..", "."])
    def test_grpc_load(self, server: ServerProcess, name: str) -> None:
        with (
            grpcclient.InferenceServerClient(server.grpc_url) as client,
            pytest.raises(InferenceServerException) as info,
        ):
            client.load_model(name)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert f"failed to load '{name}': a model name must be one folder name" in info.value.message()


class TestMalformedProtobuf:
    GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1 with a length past the end of the message

    @pytest.mark.parametrize("rpc", ["ModelInfer", "ServerLive", "RepositoryModelLoad"])
    def test_unary(self, channel: grpc.Channel, rpc: str) -> None:
        call = channel.unary_unary(SERVICE + rpc, request_serializer=None, response_deserializer=None)
        error = grpc_failure(call, self.GARBAGE)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(NOT_PROTOBUF), error.details()

    def test_stream(self, channel: grpc.Channel) -> None:
        call = channel.stream_stream(
            SERVICE + "ModelStreamInfer", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as info:
            list(call(iter([self.GARBAGE]), timeout=30))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(NOT_PROTOBUF), info.value.details()


def test_invalid_utf8_for_an_onnx_string_input(raw: httpx.Client) -> None:
    blob = b"\x02\x00\x00\x00\xff\xfe"
    doc = {
        "inputs": [
            {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": 6}}
        ]
    }
    assert_400(infer(raw, "string_identity", doc, blob), "UTF-8")
