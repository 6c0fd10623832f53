"""RepositoryModelLoad/Unload over gRPC in explicit mode, beside the same calls over HTTP.

Over gRPC the override files travel as raw `bytes_param` (HTTP base64-encodes them)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from integration.grpc_support import running_grpc_server
from support.models import small_models
from support.server import ServerProcess

CONFIG_JSON = {
    "name": "fresh",
    "platform": "onnxruntime_onnx",
    "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
}


@pytest.fixture(scope="module")
def explicit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("grpc_explicit_repo")
    small_models.write_add_sub(repo)
    small_models.write_add_versions(repo)
    log = tmp_path_factory.mktemp("grpc_explicit_logs") / "server.log"
    with running_grpc_server(repo, log, ["--model-control-mode=explicit"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def gc(explicit_server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def hc(explicit_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(explicit_server.http_url) as client:
        yield client


def add_constant(client: grpcclient.InferenceServerClient, model: str) -> tuple[str, float]:
    inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 4), np.float32))
    result = client.infer(model, [inp])
    return result.get_response().model_version, float(result.as_numpy("OUTPUT0")[0, 0])


def test_load_and_unload_from_disk(
    gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
) -> None:
    assert not gc.is_model_ready("add_versions")
    gc.load_model("add_versions")
    assert gc.is_model_ready("add_versions") and hc.is_model_ready("add_versions")
    assert add_constant(gc, "add_versions") == ("2", 2.0)
    gc.unload_model("add_versions", unload_dependents=True)
    assert not gc.is_model_ready("add_versions") and not hc.is_model_ready("add_versions")


def test_load_with_config_and_raw_file_override(gc: grpcclient.InferenceServerClient) -> None:
    model = small_models.make_add_constant_model(42.0, 4).SerializeToString()
    gc.load_model("fresh", config=json.dumps(CONFIG_JSON), files={"file:1/model.onnx": model})
    try:
        assert add_constant(gc, "fresh") == ("1", 42.0)
    finally:
        gc.unload_model("fresh")


def test_load_of_unknown_model_matches_http(
    gc: grpcclient.InferenceServerClient, hc: httpclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as g_info:
        gc.load_model("no_such_model")
    with pytest.raises(InferenceServerException) as h_info:
        hc.load_model("no_such_model")
    assert g_info.value.message() == h_info.value.message()
    assert g_info.value.status() == "StatusCode.INVALID_ARGUMENT" and h_info.value.status() == "400"


def test_unexpected_load_parameter(explicit_server: ServerProcess) -> None:
    request = service_pb2.RepositoryModelLoadRequest(model_name="add_sub")
    request.parameters["config"].int64_param = 1  # config must be a string
    with grpc.insecure_channel(explicit_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RepositoryModelLoad(request)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "unexpected error on creating Triton parameter"
