"""gRPC calls the other suites do not make, through tritonclient: deadlines, compressed requests, a
response far larger than HTTP/2's flow-control windows, a call the client cancels, many calls at once
on one channel, a long stream interleaved with unary calls, and SIGTERM with calls in flight.

They run on the server's default stack (h2); MODELPORT_TEST_GRPC_STACK=aio runs them on grpc.aio.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_identity, write_sleepy_model
from support.server import ServerProcess, running_server

IDENTITY = "identity_fp32"


def build_repository(repo: Path) -> Path:
    small_models.write_add_sub(repo)
    write_identity(repo, "FP32")
    write_sleepy_model(repo, instances=1)  # one instance: a second call waits in the queue behind the first
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("grpc_calls_repo"))


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("grpc_calls_logs") / "server.log"
    with running_server(repo, log, grpc=True) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


def tensor(module: Any, name: str, data: np.ndarray) -> Any:
    datatype = "FP32" if data.dtype == np.float32 else "BYTES"
    inp = module.InferInput(name, list(data.shape), datatype)
    inp.set_data_from_numpy(data)
    return inp


def sleep_for(seconds: float, module: Any = grpcclient) -> list[Any]:
    return [tensor(module, "IN", np.array([seconds], np.float32))]


def add_sub(module: Any, value: float, width: int = 16) -> list[Any]:
    return [
        tensor(module, "INPUT0", np.full((1, width), value, np.float32)),
        tensor(module, "INPUT1", np.ones((1, width), np.float32)),
    ]


def identity(module: Any, data: np.ndarray) -> list[Any]:
    return [tensor(module, "INPUT0", data)]


def sleepy_executions(client: grpcclient.InferenceServerClient) -> int:
    stats = client.get_inference_statistics("sleepy", as_json=True)["model_stats"][0]
    return int(stats.get("execution_count", 0))


def test_deadline_exceeded_and_the_server_carries_on(client: grpcclient.InferenceServerClient) -> None:
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as info:
        client.infer("sleepy", sleep_for(1.0), client_timeout=0.25)
    assert info.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 0.9
    result = client.infer("add_sub", add_sub(grpcclient, 2))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 3, np.float32))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client: grpcclient.InferenceServerClient, algorithm: str) -> None:
    small = client.infer("add_sub", add_sub(grpcclient, 5), compression_algorithm=algorithm)
    np.testing.assert_array_equal(small.as_numpy("OUTPUT1"), np.full((1, 16), 4, np.float32))
    data = np.tile(np.arange(1000, dtype=np.float32), 1000).reshape(1, -1)  # 4 MB that compress well
    large = client.infer(IDENTITY, identity(grpcclient, data), compression_algorithm=algorithm)
    np.testing.assert_array_equal(large.as_numpy("OUTPUT0"), data)


def test_response_far_larger_than_the_flow_control_window(client: grpcclient.InferenceServerClient) -> None:
    data = np.random.default_rng(7).random((1, 2 << 20), dtype=np.float32)  # 8 MiB each way
    for _ in range(2):
        result = client.infer(IDENTITY, identity(grpcclient, data))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


async def test_large_responses_at_once_on_one_channel(server: ServerProcess) -> None:
    arrays = [np.full((1, (1 << 20) + i), i, np.float32) for i in range(6)]  # 4 MiB each
    async with aioclient.InferenceServerClient(server.grpc_url) as client:
        results = await asyncio.gather(*(client.infer(IDENTITY, identity(aioclient, a)) for a in arrays))
    for data, result in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_a_cancelled_call_leaves_the_queue(client: grpcclient.InferenceServerClient) -> None:
    client.infer("sleepy", sleep_for(0.0))  # after whatever an earlier test left running
    before = sleepy_executions(client)
    done = threading.Event()
    first: list[Any] = []
    second: list[Any] = []

    def finished(result: Any, error: Any) -> None:
        first.append(error)
        done.set()

    client.async_infer("sleepy", sleep_for(0.8), finished)
    time.sleep(0.2)  # the first call runs on the model's one instance
    queued = client.async_infer("sleepy", sleep_for(0.01), lambda result, error: second.append(error))
    time.sleep(0.2)
    queued.cancel()  # RST_STREAM: the server cancels the call, which takes it out of the queue
    assert done.wait(10)
    time.sleep(0.3)
    assert sleepy_executions(client) == before + 1
    assert first == [None]
    assert [error.status() for error in second] == ["StatusCode.CANCELLED"]
    assert client.is_server_ready()


def test_many_calls_at_once_on_one_channel(client: grpcclient.InferenceServerClient) -> None:
    rng = np.random.default_rng(11)
    arrays = [rng.random((1, int(rng.integers(1, 200_000))), dtype=np.float32) for _ in range(96)]

    def call(index: int) -> None:
        if index % 2:
            result = client.infer(IDENTITY, identity(grpcclient, arrays[index]), request_id=str(index))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays[index])
        else:
            result = client.infer("add_sub", add_sub(grpcclient, index), request_id=str(index))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), index + 1, np.float32))
        assert result.get_response().id == str(index)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(len(arrays))))


async def test_long_stream_interleaved_with_unary_calls(server: ServerProcess) -> None:
    count = 400
    rng = np.random.default_rng(3)
    widths = [int(w) for w in rng.integers(1, 50_000, count)]

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for i in range(count):
            if i % 3 == 0:
                data = np.full((1, widths[i]), i, np.float32)
                yield {"model_name": IDENTITY, "inputs": identity(aioclient, data), "request_id": str(i)}
            else:
                yield {"model_name": "add_sub", "inputs": add_sub(aioclient, i), "request_id": str(i)}
            if i % 50 == 0:
                await asyncio.sleep(0)

    async def unary(client: aioclient.InferenceServerClient, i: int) -> None:
        result = await client.infer("add_sub", add_sub(aioclient, i))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.full((1, 16), i - 1, np.float32))

    seen: set[int] = set()
    async with aioclient.InferenceServerClient(server.grpc_url) as client:
        side = asyncio.gather(*(unary(client, i) for i in range(60)))
        async for result, error in client.stream_infer(requests()):
            assert error is None, error
            i = int(result.get_response().id)
            shape = (1, widths[i]) if i % 3 == 0 else (1, 16)
            expected = np.full(shape, i if i % 3 == 0 else i + 1, np.float32)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected)
            seen.add(i)
            if len(seen) == count:
                break
        await side
    assert seen == set(range(count))


def test_sigterm_lets_calls_in_flight_finish(repo: Path, tmp_path: Path) -> None:
    proc = ServerProcess(repo, tmp_path / "server.log", grpc=True)
    proc.start()
    try:
        with grpcclient.InferenceServerClient(proc.grpc_url) as client:
            outcomes: list[Any] = []
            finished = threading.Semaphore(0)

            def done(result: Any, error: Any) -> None:
                outcomes.append(error if error is not None else result.as_numpy("OUT")[0])
                finished.release()

            for _ in range(3):
                client.async_infer("sleepy", sleep_for(0.4), done)
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.1)
            with pytest.raises(InferenceServerException) as late:
                client.infer("add_sub", add_sub(grpcclient, 1))
            for _ in range(3):
                assert finished.acquire(timeout=15)
        assert outcomes == [pytest.approx(0.4)] * 3
        assert late.value.status() == "StatusCode.UNAVAILABLE"
        assert proc.stop() == 0
        assert not proc.leak_reports()
    finally:
        proc.kill()
