"""ModelStreamInfer through tritonclient.grpc (sync start_stream) and tritonclient.grpc.aio (stream_infer):
100 requests on one stream, errors in the middle that do not end it, and Triton's final-response flag."""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from integration.grpc_support import build_grpc_repository, running_grpc_server
from support.server import ServerProcess

STREAM_LENGTH = 100
RESULT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_grpc_repository(tmp_path_factory.mktemp("grpc_stream_repo"))
    log = tmp_path_factory.mktemp("grpc_stream_logs") / "server.log"
    with running_grpc_server(repo, log) as proc:
        yield proc


@pytest.fixture
def client(grpc_server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    """A fresh client per test: a tritonclient client has at most one stream."""
    with grpcclient.InferenceServerClient(grpc_server.grpc_url) as c:
        yield c


def add_sub_inputs(module: Any, value: float, width: int = 16) -> list[Any]:
    a = np.full((1, width), value, np.float32)
    b = np.ones((1, width), np.float32)
    inputs = [
        module.InferInput("INPUT0", [1, width], "FP32"),
        module.InferInput("INPUT1", [1, width], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def collect(results: queue.Queue[tuple[Any, Any]], count: int) -> list[tuple[Any, Any]]:
    return [results.get(timeout=RESULT_TIMEOUT_S) for _ in range(count)]


def check_result(result: Any) -> int:
    """The request index a successful stream result answers, after checking its values and flags."""
    response = result.get_response()
    index = int(response.id)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), index + 1, np.float32))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.full((1, 16), index - 1, np.float32))
    assert response.parameters["triton_final_response"].bool_param is True
    return index


class TestSyncStream:
    def test_hundred_requests_on_one_stream(self, client: grpcclient.InferenceServerClient) -> None:
        results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        for i in range(STREAM_LENGTH):
            client.async_stream_infer("add_sub", add_sub_inputs(grpcclient, i), request_id=str(i))
        answers = collect(results, STREAM_LENGTH)
        client.stop_stream()
        assert [error for _, error in answers if error is not None] == []
        assert sorted(check_result(result) for result, _ in answers) == list(range(STREAM_LENGTH))

    def test_bad_requests_in_the_middle_do_not_end_the_stream(
        self, client: grpcclient.InferenceServerClient
    ) -> None:
        results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        for i in range(STREAM_LENGTH):
            if i == 40:
                client.async_stream_infer(
                    "add_sub", add_sub_inputs(grpcclient, i, width=15), request_id=str(i)
                )
            elif i == 60:
                client.async_stream_infer("no_such_model", add_sub_inputs(grpcclient, i), request_id=str(i))
            else:
                client.async_stream_infer("add_sub", add_sub_inputs(grpcclient, i), request_id=str(i))
        answers = collect(results, STREAM_LENGTH)
        client.stop_stream()
        errors = sorted(str(error.message()) for _, error in answers if error is not None)
        assert len(errors) == 2
        assert errors[0].startswith("Request for unknown model: 'no_such_model' is not found")
        assert errors[1].startswith(
            "[request id: 40] unexpected shape for input 'INPUT0' for model 'add_sub'"
        )
        ok = sorted(check_result(result) for result, error in answers if error is None)
        assert ok == [i for i in range(STREAM_LENGTH) if i not in (40, 60)]

    def test_stream_then_plain_infer_on_same_client(self, client: grpcclient.InferenceServerClient) -> None:
        results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        client.async_stream_infer("add_sub", add_sub_inputs(grpcclient, 3), request_id="3")
        ((result, error),) = collect(results, 1)
        client.stop_stream()
        assert error is None and check_result(result) == 3
        plain = client.infer("add_sub", add_sub_inputs(grpcclient, 5))
        np.testing.assert_array_equal(plain.as_numpy("OUTPUT0"), np.full((1, 16), 6, np.float32))
        # The final-response flag is a stream thing; plain ModelInfer responses do not carry it.
        assert "triton_final_response" not in plain.get_response().parameters

    def test_grpc_error_header_ends_the_stream_with_the_status(
        self, client: grpcclient.InferenceServerClient
    ) -> None:
        results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(
            callback=lambda result, error: results.put((result, error)), headers={"triton_grpc_error": "true"}
        )
        client.async_stream_infer("add_sub", add_sub_inputs(grpcclient, 1), request_id="1")
        (first,) = collect(results, 1)
        client.async_stream_infer("no_such_model", add_sub_inputs(grpcclient, 2), request_id="2")
        (second,) = collect(results, 1)
        client.stop_stream()
        assert first[1] is None and check_result(first[0]) == 1
        assert isinstance(second[1], InferenceServerException)
        assert second[1].status() == "StatusCode.NOT_FOUND"


class TestAsyncStream:
    async def test_hundred_requests_on_one_stream(self, grpc_server: ServerProcess) -> None:
        async def requests() -> AsyncIterator[dict[str, Any]]:
            for i in range(STREAM_LENGTH):
                width = 15 if i == 50 else 16
                yield {
                    "model_name": "add_sub",
                    "inputs": add_sub_inputs(aioclient, i, width),
                    "request_id": str(i),
                }

        ok: list[int] = []
        errors: list[str] = []
        async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
            async for result, error in client.stream_infer(requests()):
                if error is not None:
                    errors.append(str(error.message()))
                else:
                    ok.append(check_result(result))
                if len(ok) + len(errors) == STREAM_LENGTH:
                    break
        assert sorted(ok) == [i for i in range(STREAM_LENGTH) if i != 50]
        assert len(errors) == 1 and errors[0].startswith("[request id: 50] unexpected shape")
