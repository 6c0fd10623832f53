"""The gRPC frontend through tritonclient.grpc (sync), checked against tritonclient.http on the same server.

Scenarios mirror the HTTP suite: health, metadata, config, every datatype, BYTES, classification,
versions, output subsets, and the error cases, with the same messages over both protocols.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from integration.grpc_support import build_grpc_repository, running_grpc_server
from modelport.shm.cuda import open_cuda_ipc
from support.models import CLASSIFIER_LABELS, NUMERIC_TYPES, identity_model_name
from support.server import ServerProcess

RNG = np.random.default_rng(4321)
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_grpc_repository(tmp_path_factory.mktemp("grpc_repo"))
    log = tmp_path_factory.mktemp("grpc_logs") / "server.log"
    with running_grpc_server(repo, log) as proc:
        yield proc


@pytest.fixture(scope="module")
def gc(grpc_server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(grpc_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def hc(grpc_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(
        grpc_server.http_url, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
    ) as client:
        yield client


@pytest.fixture(scope="module")
def stub(grpc_server: ServerProcess) -> Iterator[Any]:
    """The raw generated stub, for requests tritonclient will not build (typed contents, mixed data)."""
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


# --- helpers ------------------------------------------------------------------------------------
def sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    _, dtype = NUMERIC_TYPES[datatype]
    if dtype == np.bool_:
        return RNG.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        values.reshape(-1)[0], values.reshape(-1)[-1] = info.min, info.max
        return values
    return RNG.normal(size=shape).astype(dtype)


def make_inputs(module: Any, arrays: dict[str, tuple[str, np.ndarray]]) -> list[Any]:
    inputs = []
    for name, (datatype, data) in arrays.items():
        inp = module.InferInput(name, list(data.shape), datatype)
        inp.set_data_from_numpy(data)
        inputs.append(inp)
    return inputs


def infer_both(
    gc: grpcclient.InferenceServerClient,
    hc: httpclient.InferenceServerClient,
    model: str,
    arrays: dict[str, tuple[str, np.ndarray]],
    outputs: list[str] | None = None,
    class_count: int = 0,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """The same request over gRPC and HTTP (binary data)."""
    g_outputs = (
        [grpcclient.InferRequestedOutput(n, class_count=class_count) for n in outputs] if outputs else None
    )
    h_outputs = (
        [httpclient.InferRequestedOutput(n, class_count=class_count) for n in outputs] if outputs else None
    )
    g = gc.infer(model, make_inputs(grpcclient, arrays), outputs=g_outputs, **kwargs)
    h = hc.infer(model, make_inputs(httpclient, arrays), outputs=h_outputs, **kwargs)
    return g, h


def errors_both(call_grpc: Any, call_http: Any) -> tuple[InferenceServerException, InferenceServerException]:
    with pytest.raises(InferenceServerException) as g_info:
        call_grpc()
    with pytest.raises(InferenceServerException) as h_info:
        call_http()
    return g_info.value, h_info.value


def raw_request(model: str, **fields: Any) -> Any:
    return service_pb2.ModelInferRequest(model_name=model, **fields)


def rpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# --- health and metadata ------------------------------------------------------------------------
class TestHealthAndMetadata:
    def test_live_and_ready(self, gc: grpcclient.InferenceServerClient) -> None:
        assert gc.is_server_live()
        assert gc.is_server_ready()

    def test_model_ready(self, gc: grpcclient.InferenceServerClient) -> None:
        assert gc.is_model_ready("add_sub")
        assert gc.is_model_ready("add_versions", "1")
        assert gc.is_model_ready("add_versions", "2")
        # Triton 2.51: an unknown model (or version) is "not ready", not an error.
        assert not gc.is_model_ready("no_such_model")
        assert not gc.is_model_ready("add_sub", "7")

    def test_server_metadata_matches_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        meta = gc.get_server_metadata(as_json=True)
        assert meta == hc.get_server_metadata()
        assert {"classification", "model_repository", "system_shared_memory"} <= set(meta["extensions"])
        assert "cuda_shared_memory" not in meta["extensions"]

    @pytest.mark.parametrize(
        "model", ["add_sub", "string_identity", "nobatch", "classifier", "simple_noconfig"]
    )
    def test_model_metadata_matches_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient, model: str
    ) -> None:
        meta = gc.get_model_metadata(model)
        expected = hc.get_model_metadata(model)
        assert meta.name == expected["name"]
        assert list(meta.versions) == expected["versions"]
        assert meta.platform == expected["platform"]
        for got, want in zip(
            list(meta.inputs) + list(meta.outputs), expected["inputs"] + expected["outputs"], strict=True
        ):
            assert (got.name, got.datatype, list(got.shape)) == (
                want["name"],
                want["datatype"],
                want["shape"],
            )

    def test_model_metadata_batch_dim(self, gc: grpcclient.InferenceServerClient) -> None:
        meta = gc.get_model_metadata("add_sub")
        assert [list(t.shape) for t in meta.inputs] == [[-1, 16], [-1, 16]]
        assert list(gc.get_model_metadata("nobatch").inputs[0].shape) == [2, 3]

    def test_versioned_metadata(self, gc: grpcclient.InferenceServerClient) -> None:
        assert list(gc.get_model_metadata("add_versions", "1").versions) == ["1", "2"]

    @pytest.mark.parametrize("model", ["add_sub", "classifier", "simple_noconfig", "add_versions"])
    def test_model_config_matches_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient, model: str
    ) -> None:
        config = gc.get_model_config(model).config
        expected = json_format.ParseDict(hc.get_model_config(model), model_config_pb2.ModelConfig())
        assert config == expected
        assert config.name == model

    def test_unknown_model_metadata(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        g, h = errors_both(lambda: gc.get_model_metadata("nosuch"), lambda: hc.get_model_metadata("nosuch"))
        assert g.status() == "StatusCode.NOT_FOUND" and h.status() == "404"
        assert g.message() == h.message() == "Request for unknown model: 'nosuch' is not found"

    def test_unknown_model_config(self, gc: grpcclient.InferenceServerClient) -> None:
        with pytest.raises(InferenceServerException) as info:
            gc.get_model_config("nosuch")
        assert info.value.status() == "StatusCode.NOT_FOUND"

    def test_unknown_version(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        g, h = errors_both(
            lambda: gc.get_model_metadata("add_sub", "9"), lambda: hc.get_model_metadata("add_sub", "9")
        )
        assert g.status() == "StatusCode.NOT_FOUND" and h.status() == "404"
        assert g.message() == h.message()

    def test_non_numeric_version(self, stub: Any) -> None:
        error = rpc_error(
            lambda: stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="add_sub", version="x"))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "version string 'x'" in error.details()


# --- inference ----------------------------------------------------------------------------------
class TestInfer:
    def test_add_sub(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        a = RNG.normal(size=(3, 16)).astype(np.float32)
        b = RNG.normal(size=(3, 16)).astype(np.float32)
        g, h = infer_both(gc, hc, "add_sub", {"INPUT0": ("FP32", a), "INPUT1": ("FP32", b)})
        np.testing.assert_allclose(g.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(g.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
        for name in ("OUTPUT0", "OUTPUT1"):
            np.testing.assert_array_equal(g.as_numpy(name), h.as_numpy(name))
        response = g.get_response()
        assert (response.model_name, response.model_version) == ("add_sub", "1")
        # Every output travels in raw_output_contents, at its own index.
        assert len(response.raw_output_contents) == len(response.outputs) == 2
        assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]

    @pytest.mark.parametrize("datatype", list(NUMERIC_TYPES))
    def test_every_datatype(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient, datatype: str
    ) -> None:
        data = sample(datatype, (2, 5))
        g, h = infer_both(gc, hc, identity_model_name(datatype), {"INPUT0": (datatype, data)})
        out = g.as_numpy("OUTPUT0")
        assert out.dtype == data.dtype
        np.testing.assert_array_equal(out, data)
        np.testing.assert_array_equal(out, h.as_numpy("OUTPUT0"))
        assert g.get_output("OUTPUT0").datatype == datatype
        assert list(g.get_output("OUTPUT0").shape) == [2, 5]

    def test_bytes(self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient) -> None:
        data = np.array([[b"hello"], [b""], ["unicod\u00e9".encode()], [b"a\x00b"]], dtype=object)
        g, h = infer_both(gc, hc, "string_identity", {"INPUT0": ("BYTES", data)})
        np.testing.assert_array_equal(g.as_numpy("OUTPUT0"), data)
        np.testing.assert_array_equal(g.as_numpy("OUTPUT0"), h.as_numpy("OUTPUT0"))
        assert g.get_output("OUTPUT0").datatype == "BYTES"

    def test_request_id_echoed(self, gc: grpcclient.InferenceServerClient) -> None:
        a = np.zeros((1, 16), np.float32)
        result = gc.infer(
            "add_sub",
            make_inputs(grpcclient, {"INPUT0": ("FP32", a), "INPUT1": ("FP32", a)}),
            request_id="r-42",
        )
        assert result.get_response().id == "r-42"
        plain = gc.infer("add_sub", make_inputs(grpcclient, {"INPUT0": ("FP32", a), "INPUT1": ("FP32", a)}))
        assert plain.get_response().id == ""

    def test_request_parameters_accepted(self, gc: grpcclient.InferenceServerClient) -> None:
        a = np.ones((1, 16), np.float32)
        result = gc.infer(
            "add_sub",
            make_inputs(grpcclient, {"INPUT0": ("FP32", a), "INPUT1": ("FP32", a)}),
            parameters={"custom_flag": True, "custom_int": 3, "custom_str": "x"},
            priority=1,
            timeout=10_000_000,
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)

    def test_output_subset(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        a = RNG.normal(size=(1, 16)).astype(np.float32)
        b = RNG.normal(size=(1, 16)).astype(np.float32)
        g, h = infer_both(
            gc, hc, "add_sub", {"INPUT0": ("FP32", a), "INPUT1": ("FP32", b)}, outputs=["OUTPUT1"]
        )
        assert [o.name for o in g.get_response().outputs] == ["OUTPUT1"]
        assert g.as_numpy("OUTPUT0") is None
        np.testing.assert_array_equal(g.as_numpy("OUTPUT1"), h.as_numpy("OUTPUT1"))

    def test_classification_with_labels(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        logits = np.array(
            [[0.1, 3.0, 0.5, 0, 0, 0, 0, 0, 0, 2.0], [5.0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0]], np.float32
        )
        g, h = infer_both(
            gc, hc, "classifier", {"INPUT0": ("FP32", logits)}, outputs=["OUTPUT0"], class_count=3
        )
        out = g.as_numpy("OUTPUT0")
        assert g.get_output("OUTPUT0").datatype == "BYTES"
        assert list(g.get_output("OUTPUT0").shape) == [2, 3]
        assert [item.split(b":", 1)[1] for item in out[0]] == [b"1:one", b"9:nine", b"2:two"]
        probabilities = np.exp(logits[0]) / np.exp(logits[0]).sum()
        assert out[0][0] == f"{probabilities[1]:f}:1:{CLASSIFIER_LABELS[1]}".encode()
        assert out[1][0].endswith(f":0:{CLASSIFIER_LABELS[0]}".encode())
        np.testing.assert_array_equal(out, h.as_numpy("OUTPUT0"))

    def test_classification_of_unlabelled_output(self, gc: grpcclient.InferenceServerClient) -> None:
        logits = np.array([[0.1, 3.0, 0.5, 0, 0, 0, 0, 0, 0, 2.0]], np.float32)
        result = gc.infer(
            "classifier",
            make_inputs(grpcclient, {"INPUT0": ("FP32", logits)}),
            outputs=[grpcclient.InferRequestedOutput("RAW", class_count=3)],
        )
        assert result.as_numpy("RAW").tolist() == [[b"3.000000:1", b"2.000000:9", b"0.500000:2"]]

    def test_classification_without_labels(self, gc: grpcclient.InferenceServerClient) -> None:
        a = np.arange(16, dtype=np.float32).reshape(1, 16)
        result = gc.infer(
            "add_sub",
            make_inputs(grpcclient, {"INPUT0": ("FP32", a), "INPUT1": ("FP32", np.zeros_like(a))}),
            outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)],
        )
        assert result.as_numpy("OUTPUT0").tolist() == [[b"15.000000:15", b"14.000000:14"]]

    def test_versions(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        x = np.zeros((1, 4), np.float32)
        for version in ("1", "2"):
            g, h = infer_both(gc, hc, "add_versions", {"INPUT0": ("FP32", x)}, model_version=version)
            np.testing.assert_array_equal(g.as_numpy("OUTPUT0"), x + int(version))
            np.testing.assert_array_equal(g.as_numpy("OUTPUT0"), h.as_numpy("OUTPUT0"))
            assert g.get_response().model_version == version
        latest = gc.infer("add_versions", make_inputs(grpcclient, {"INPUT0": ("FP32", x)}))
        assert latest.get_response().model_version == "2"

    def test_non_batching_model(self, gc: grpcclient.InferenceServerClient) -> None:
        x = RNG.normal(size=(2, 3)).astype(np.float32)
        result = gc.infer("nobatch", make_inputs(grpcclient, {"INPUT0": ("FP32", x)}))
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), x * 2)

    def test_batch_of_eight_images_fits_default_limits(self, gc: grpcclient.InferenceServerClient) -> None:
        images = RNG.random((8, 3 * 224 * 224), dtype=np.float32)  # 4.8 MB, over grpc's 4 MiB default
        result = gc.infer(identity_model_name("FP32"), make_inputs(grpcclient, {"INPUT0": ("FP32", images)}))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), images)


class TestTypedContents:
    """Requests with typed `contents` instead of raw bytes (tritonclient never sends these)."""

    def test_fp32_contents(self, stub: Any) -> None:
        values = [float(v) for v in range(16)]
        request = raw_request(
            "add_sub",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name=name,
                    datatype="FP32",
                    shape=[1, 16],
                    contents=service_pb2.InferTensorContents(fp32_contents=values),
                )
                for name in ("INPUT0", "INPUT1")
            ],
        )
        response = stub.ModelInfer(request)
        assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
        out = np.frombuffer(response.raw_output_contents[0], np.float32)
        np.testing.assert_array_equal(out, np.array(values, np.float32) * 2)
        assert not response.outputs[0].HasField("contents")

    @pytest.mark.parametrize(
        ("datatype", "field", "values"),
        [
            ("INT8", "int_contents", [-128, 0, 127]),
            ("INT16", "int_contents", [-32768, 1, 32767]),
            ("INT32", "int_contents", [-(2**31), 5, 2**31 - 1]),
            ("INT64", "int64_contents", [-(2**63), 7, 2**63 - 1]),
            ("UINT8", "uint_contents", [0, 1, 255]),
            ("UINT16", "uint_contents", [0, 1, 65535]),
            ("UINT32", "uint_contents", [0, 1, 2**32 - 1]),
            ("UINT64", "uint64_contents", [0, 1, 2**64 - 1]),
            ("BOOL", "bool_contents", [True, False, True]),
            ("FP64", "fp64_contents", [1.5, -2.25, 1e300]),
        ],
    )
    def test_typed_fields(self, stub: Any, datatype: str, field: str, values: list[Any]) -> None:
        contents = service_pb2.InferTensorContents(**{field: values})
        request = raw_request(
            identity_model_name(datatype),
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name="INPUT0", datatype=datatype, shape=[1, 3], contents=contents
                )
            ],
        )
        response = stub.ModelInfer(request)
        out = np.frombuffer(response.raw_output_contents[0], NUMERIC_TYPES[datatype][1])
        np.testing.assert_array_equal(out, np.array(values, dtype=NUMERIC_TYPES[datatype][1]))

    def test_bytes_contents(self, stub: Any) -> None:
        request = raw_request(
            "string_identity",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name="INPUT0",
                    datatype="BYTES",
                    shape=[2, 1],
                    contents=service_pb2.InferTensorContents(bytes_contents=[b"ab", b"c"]),
                )
            ],
        )
        response = stub.ModelInfer(request)
        assert response.raw_output_contents[0] == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"

    def test_contents_and_raw_mixed(self, stub: Any) -> None:
        tensor = service_pb2.ModelInferRequest.InferInputTensor
        request = raw_request(
            "add_sub",
            inputs=[
                tensor(name="INPUT0", datatype="FP32", shape=[1, 16],
                       contents=service_pb2.InferTensorContents(fp32_contents=[0.0] * 16)),
                tensor(name="INPUT1", datatype="FP32", shape=[1, 16]),
            ],
            raw_input_contents=[np.zeros(16, np.float32).tobytes()],
        )  # fmt: skip
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == (
            "contents field must not be specified when using raw_input_contents for 'INPUT0' "
            "for model 'add_sub'"
        )

    def test_wrong_typed_field(self, stub: Any) -> None:
        request = raw_request(
            "add_sub",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name=name, datatype="FP32", shape=[1, 16],
                    contents=service_pb2.InferTensorContents(int_contents=list(range(16))),
                )
                for name in ("INPUT0", "INPUT1")
            ],
        )  # fmt: skip
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "of type 'INT32', expected datatype 'FP32'" in error.details()

    def test_no_data(self, stub: Any) -> None:
        tensor = service_pb2.ModelInferRequest.InferInputTensor
        request = raw_request(
            "add_sub", inputs=[tensor(name=n, datatype="FP32", shape=[1, 16]) for n in ("INPUT0", "INPUT1")]
        )
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            error.details() == "unable to find data for input tensor 'INPUT0' for model 'add_sub' in request."
        )


# --- errors -------------------------------------------------------------------------------------
class TestErrors:
    def test_unknown_model(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        x = np.zeros((1, 4), np.float32)
        g, h = errors_both(
            lambda: gc.infer("nosuch", make_inputs(grpcclient, {"INPUT0": ("FP32", x)})),
            lambda: hc.infer("nosuch", make_inputs(httpclient, {"INPUT0": ("FP32", x)})),
        )
        assert g.status() == "StatusCode.NOT_FOUND" and h.status() == "404"
        assert g.message() == h.message() == "Request for unknown model: 'nosuch' is not found"

    def test_unknown_version(self, gc: grpcclient.InferenceServerClient) -> None:
        x = np.zeros((1, 4), np.float32)
        with pytest.raises(InferenceServerException) as info:
            gc.infer("add_versions", make_inputs(grpcclient, {"INPUT0": ("FP32", x)}), model_version="3")
        assert info.value.status() == "StatusCode.NOT_FOUND"

    def test_wrong_shape(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        arrays = {
            "INPUT0": ("FP32", np.zeros((1, 15), np.float32)),
            "INPUT1": ("FP32", np.zeros((1, 15), np.float32)),
        }
        g, h = errors_both(
            lambda: gc.infer("add_sub", make_inputs(grpcclient, arrays)),
            lambda: hc.infer("add_sub", make_inputs(httpclient, arrays)),
        )
        assert g.status() == "StatusCode.INVALID_ARGUMENT" and h.status() == "400"
        assert g.message() == h.message()
        assert (
            "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [-1,16], got [1,15]"
            in g.message()
        )

    def test_wrong_datatype(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        arrays = {
            "INPUT0": ("INT32", np.zeros((1, 16), np.int32)),
            "INPUT1": ("FP32", np.zeros((1, 16), np.float32)),
        }
        g, h = errors_both(
            lambda: gc.infer("add_sub", make_inputs(grpcclient, arrays)),
            lambda: hc.infer("add_sub", make_inputs(httpclient, arrays)),
        )
        assert g.status() == "StatusCode.INVALID_ARGUMENT" and h.status() == "400"
        assert g.message() == h.message()
        assert "data-type is 'INT32', but model 'add_sub' expects 'FP32'" in g.message()

    def test_missing_input(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        arrays = {"INPUT0": ("FP32", np.zeros((1, 16), np.float32))}
        g, h = errors_both(
            lambda: gc.infer("add_sub", make_inputs(grpcclient, arrays)),
            lambda: hc.infer("add_sub", make_inputs(httpclient, arrays)),
        )
        assert g.status() == "StatusCode.INVALID_ARGUMENT" and h.status() == "400"
        assert g.message() == h.message()

    def test_batch_too_large(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        arrays = {n: ("FP32", np.zeros((9, 16), np.float32)) for n in ("INPUT0", "INPUT1")}
        g, h = errors_both(
            lambda: gc.infer("add_sub", make_inputs(grpcclient, arrays)),
            lambda: hc.infer("add_sub", make_inputs(httpclient, arrays)),
        )
        assert g.status() == "StatusCode.INVALID_ARGUMENT" and h.status() == "400"
        assert g.message() == h.message()

    def test_unknown_output(self, gc: grpcclient.InferenceServerClient) -> None:
        arrays = {n: ("FP32", np.zeros((1, 16), np.float32)) for n in ("INPUT0", "INPUT1")}
        with pytest.raises(InferenceServerException) as info:
            gc.infer(
                "add_sub", make_inputs(grpcclient, arrays), outputs=[grpcclient.InferRequestedOutput("NOPE")]
            )
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "unexpected inference output 'NOPE'" in info.value.message()

    def test_raw_size_mismatch(self, stub: Any) -> None:
        tensor = service_pb2.ModelInferRequest.InferInputTensor
        request = raw_request(
            "add_sub",
            inputs=[tensor(name=n, datatype="FP32", shape=[1, 16]) for n in ("INPUT0", "INPUT1")],
            raw_input_contents=[b"\x00" * 64, b"\x00" * 60],
        )
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            "input byte size mismatch for input 'INPUT1' for model 'add_sub'. Expected 64, got 60"
            in error.details()
        )

    def test_reserved_parameter(self, stub: Any) -> None:
        request = raw_request("add_sub")
        request.parameters["triton_secret"].bool_param = True
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "reserved for Triton usage" in error.details()

    def test_bad_classification_parameter(self, stub: Any) -> None:
        request = raw_request("add_sub")
        out = request.outputs.add(name="OUTPUT0")
        out.parameters["classification"].string_param = "3"
        error = rpc_error(lambda: stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "invalid value type for 'classification' parameter, expected int64_param"

    def test_classification_of_bytes_output(self, gc: grpcclient.InferenceServerClient) -> None:
        data = np.array([[b"x"]], dtype=object)
        with pytest.raises(InferenceServerException) as info:
            gc.infer(
                "string_identity",
                make_inputs(grpcclient, {"INPUT0": ("BYTES", data)}),
                outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=1)],
            )
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "class result not available" in info.value.message()


# --- repository, statistics, and the features this server does not have ------------------------
class TestOtherRpcs:
    def test_repository_index_matches_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        index = gc.get_model_repository_index(as_json=True)["models"]
        assert index == hc.get_model_repository_index()
        assert {"name": "add_versions", "version": "2", "state": "READY"} in index

    def test_load_unload_refused_outside_explicit_mode(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        for call_grpc, call_http in (
            (lambda: gc.load_model("add_sub"), lambda: hc.load_model("add_sub")),
            (lambda: gc.unload_model("add_sub"), lambda: hc.unload_model("add_sub")),
        ):
            g, h = errors_both(call_grpc, call_http)
            assert g.status() == "StatusCode.UNAVAILABLE" and h.status() == "503"
            assert g.message() == h.message()
        assert gc.is_model_ready("add_sub")

    def test_statistics(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        a = np.zeros((1, 16), np.float32)
        gc.infer("add_sub", make_inputs(grpcclient, {"INPUT0": ("FP32", a), "INPUT1": ("FP32", a)}))
        stats = gc.get_inference_statistics("add_sub", as_json=True)["model_stats"]
        assert [(s["name"], s["version"]) for s in stats] == [("add_sub", "1")]
        assert int(stats[0]["inference_stats"]["success"]["count"]) >= 1
        expected = hc.get_inference_statistics("add_sub")["model_stats"][0]["inference_stats"]["success"][
            "count"
        ]
        assert int(stats[0]["inference_stats"]["success"]["count"]) <= expected

    def test_statistics_unknown_model(self, gc: grpcclient.InferenceServerClient) -> None:
        with pytest.raises(InferenceServerException) as info:
            gc.get_inference_statistics("nosuch")
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert info.value.message() == "requested model 'nosuch' is not available"

    def test_log_settings_match_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        def as_dict(response: Any) -> dict[str, Any]:
            return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in response.settings.items()}

        before = hc.get_log_settings()
        assert as_dict(gc.get_log_settings()) == before
        try:
            updated = as_dict(gc.update_log_settings({"log_verbose_level": 1, "log_info": False}))
            assert updated["log_verbose_level"] == 1 and updated["log_info"] is False
            assert hc.get_log_settings() == updated
        finally:
            hc.update_log_settings({k: before[k] for k in ("log_verbose_level", "log_info")})
        assert as_dict(gc.get_log_settings()) == before

    def test_log_settings_bad_value(self, gc: grpcclient.InferenceServerClient) -> None:
        with pytest.raises(InferenceServerException) as info:
            gc.update_log_settings({"log_format": "not-a-format"})
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"

    def test_trace_settings_match_http(
        self, gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
    ) -> None:
        def as_dict(response: Any) -> dict[str, list[str]]:
            return {k: list(v.value) for k, v in response.settings.items()}

        def http_as_lists(doc: dict[str, Any]) -> dict[str, list[str]]:
            return {k: v if isinstance(v, list) else [str(v)] for k, v in doc.items()}

        assert as_dict(gc.get_trace_settings()) == http_as_lists(hc.get_trace_settings())
        try:
            updated = as_dict(gc.update_trace_settings(model_name="add_sub", settings={"trace_rate": "7"}))
            assert updated["trace_rate"] == ["7"]
            assert hc.get_trace_settings(model_name="add_sub")["trace_rate"] == "7"
            assert as_dict(gc.get_trace_settings())["trace_rate"] != ["7"]  # the global setting is untouched
        finally:
            reset = gc.update_trace_settings(model_name="add_sub", settings={"trace_rate": None})
        assert as_dict(reset) == as_dict(gc.get_trace_settings())

    def test_trace_settings_unknown_model(self, gc: grpcclient.InferenceServerClient) -> None:
        with pytest.raises(InferenceServerException) as info:
            gc.get_trace_settings(model_name="nosuch")
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"

    def test_cuda_shared_memory_without_a_gpu(self, gc: grpcclient.InferenceServerClient) -> None:
        if open_cuda_ipc() is not None:
            pytest.skip("this machine has CUDA: tests/integration/test_gpu.py registers real CUDA regions")
        assert len(gc.get_cuda_shared_memory_status().regions) == 0
        with pytest.raises(InferenceServerException) as info:
            gc.register_cuda_shared_memory("gpu_region", base64.b64encode(b"\x00" * 64), 0, 1024)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "this server has no CUDA device" in info.value.message()
        gc.unregister_cuda_shared_memory()

    def test_server_still_serves_after_errors(self, gc: grpcclient.InferenceServerClient) -> None:
        assert gc.is_server_live() and gc.is_server_ready()

    def test_repository_name_unsupported(self, stub: Any) -> None:
        error = rpc_error(
            lambda: stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(repository_name="r"))
        )
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert error.details() == "'repository_name' specification is not supported"
