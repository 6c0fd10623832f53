"""gRPC message size limits: an over-size request gets RESOURCE_EXHAUSTED, and the server carries on."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from integration.grpc_support import build_grpc_repository, running_grpc_server
from support.models import identity_model_name
from support.server import ServerProcess

RECEIVE_LIMIT = 1024 * 1024
SEND_LIMIT = 512 * 1024


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_grpc_repository(tmp_path_factory.mktemp("grpc_limits_repo"))
    log = tmp_path_factory.mktemp("grpc_limits_logs") / "server.log"
    args = [f"--grpc-max-receive-message-size={RECEIVE_LIMIT}", f"--grpc-max-send-message-size={SEND_LIMIT}"]
    with running_grpc_server(repo, log, args) as proc:
        yield proc


@pytest.fixture
def client(limited_server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(limited_server.grpc_url) as c:
        yield c


def identity_input(elements: int) -> list[grpcclient.InferInput]:
    data = np.arange(elements, dtype=np.float32).reshape(1, elements)
    inp = grpcclient.InferInput("INPUT0", [1, elements], "FP32")
    inp.set_data_from_numpy(data)
    return [inp]


def test_request_under_the_limits(client: grpcclient.InferenceServerClient) -> None:
    result = client.infer(identity_model_name("FP32"), identity_input(100_000))  # 400 kB each way
    assert result.as_numpy("OUTPUT0").shape == (1, 100_000)


def test_oversize_request_is_resource_exhausted(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer(identity_model_name("FP32"), identity_input(RECEIVE_LIMIT // 4 + 1024))
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live()
    # The connection is still usable.
    assert client.infer(identity_model_name("FP32"), identity_input(16)).as_numpy("OUTPUT0").shape == (1, 16)


def test_oversize_response_is_resource_exhausted(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer(identity_model_name("FP32"), identity_input(SEND_LIMIT // 4 + 1024))  # fits in, not out
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_ready()
