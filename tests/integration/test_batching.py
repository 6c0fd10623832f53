"""Dynamic batching, queue policies and responsiveness, through tritonclient against a real server.

The `slow` ONNX model does work proportional to its input width R (R x 256 rows through sixteen
256x256 matmuls), so a request can keep the only instance busy for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from support.models import SLOW_WIDTH, slow_model
from support.server import ServerProcess, http_status, running_server

MATMULS = 16


IO = """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]
instance_group [{ count: 1 kind: KIND_CPU }]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""

CONFIGS = {
    "slow_batched": (
        "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100000 }"
    ),
    "slow_unbatched": "",
    "slow_bounded": "dynamic_batching { default_queue_policy { max_queue_size: 2 } }",
    "slow_timeout": (
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 30000000 "
        "allow_timeout_override: true } }"
    ),
}


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("batching_repo")
    model_bytes = slow_model(MATMULS).SerializeToString()
    for name, scheduling in CONFIGS.items():
        version = Path(repo, name, "1")
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(model_bytes)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{IO}\n{scheduling}\n')
    log = tmp_path_factory.mktemp("logs") / "batching_server.log"
    with running_server(repo, log) as proc:
        yield proc


def _input(values: np.ndarray, module: object = httpclient) -> object:
    tensor = module.InferInput("INPUT0", list(values.shape), "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(values)
    return tensor


def _expected(values: np.ndarray) -> np.ndarray:
    return (values.sum(axis=1, keepdims=True) * SLOW_WIDTH).astype(np.float32)


def _stats(server: ServerProcess, model: str) -> dict:
    client = httpclient.InferenceServerClient(server.url)
    try:
        return client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()


async def _concurrent(
    server: ServerProcess, model: str, rows: list[np.ndarray], **kwargs: object
) -> list[object]:
    client = aiohttpclient.InferenceServerClient(server.url)
    try:
        calls = [client.infer(model, [_input(r, aiohttpclient)], **kwargs) for r in rows]
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()


def test_concurrent_single_requests_are_served_in_batches(batching_server: ServerProcess) -> None:
    rows = [np.full((1, 16), i + 1, dtype=np.float32) for i in range(16)]
    results = asyncio.run(_concurrent(batching_server, "slow_batched", rows))
    for row, result in zip(rows, results, strict=True):
        assert not isinstance(result, Exception), result
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), _expected(row))  # each got its own row
    stats = _stats(batching_server, "slow_batched")
    assert stats["inference_count"] == 16
    assert stats["execution_count"] < 16
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert max(sizes) > 1 and max(sizes) <= 8
    assert sum(size * count for size, count in sizes.items()) == 16
    counts = {
        k: v["count"]
        for k, v in stats["inference_stats"].items()
        if k in ("compute_input", "compute_infer", "compute_output", "success", "queue")
    }
    assert len(set(counts.values())) == 1  # perf_analyzer requires the compute counts to agree


def test_without_dynamic_batching_each_request_runs_alone(batching_server: ServerProcess) -> None:
    rows = [np.full((1, 16), 1, dtype=np.float32) for _ in range(6)]
    results = asyncio.run(_concurrent(batching_server, "slow_unbatched", rows))
    assert not any(isinstance(r, Exception) for r in results)
    stats = _stats(batching_server, "slow_unbatched")
    assert stats["execution_count"] == stats["inference_count"] == 6


def test_a_full_queue_rejects_with_503_and_loses_nothing_else(batching_server: ServerProcess) -> None:
    busy = np.ones((1, 2048), dtype=np.float32)  # keeps the instance busy while the others queue
    rows = [busy] + [np.ones((1, 2048), dtype=np.float32) for _ in range(7)]
    results = asyncio.run(_concurrent(batching_server, "slow_bounded", rows))
    rejected = [r for r in results if isinstance(r, InferenceServerException)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert rejected, "a queue bounded at 2 must reject some of 8 concurrent requests"
    for exc in rejected:
        assert exc.status() == "503" and "Exceeds maximum queue size" in exc.message()
    assert len(served) + len(rejected) == len(rows) and len(served) >= 2
    for result in served:
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), _expected(busy))
    assert _stats(batching_server, "slow_bounded")["inference_stats"]["fail"]["count"] == 0


def test_a_timeout_fires_while_the_only_instance_is_busy(batching_server: ServerProcess) -> None:
    async def scenario() -> tuple[object, object, float]:
        client = aiohttpclient.InferenceServerClient(batching_server.url)
        try:
            heavy = asyncio.create_task(
                client.infer("slow_timeout", [_input(np.ones((1, 65536), np.float32), aiohttpclient)])
            )
            await asyncio.sleep(0.1)  # the heavy request is now running
            started = time.monotonic()
            try:
                late = await client.infer(
                    "slow_timeout", [_input(np.ones((1, 4), np.float32), aiohttpclient)], timeout=50_000
                )
            except InferenceServerException as exc:
                late = exc
            elapsed = time.monotonic() - started
            return await heavy, late, elapsed
        finally:
            await client.close()

    heavy, late, elapsed = asyncio.run(scenario())
    assert isinstance(late, InferenceServerException)
    assert late.status() == "503" and "Request timeout expired" in late.message()
    assert not isinstance(heavy, Exception)
    heavy_ms = _stats(batching_server, "slow_timeout")["inference_stats"]["compute_infer"]["ns"] / 1e6
    assert elapsed * 1000 < heavy_ms, (
        f"timeout answered after {elapsed * 1000:.0f} ms, heavy ran {heavy_ms:.0f} ms"
    )
    stats = _stats(batching_server, "slow_timeout")
    assert stats["inference_stats"]["fail"]["count"] == 1


def test_health_answers_quickly_while_every_instance_is_busy(batching_server: ServerProcess) -> None:
    async def scenario() -> list[float]:
        client = aiohttpclient.InferenceServerClient(batching_server.url)
        try:
            work = [
                client.infer("slow_unbatched", [_input(np.ones((1, 4096), np.float32), aiohttpclient)])
                for _ in range(3)
            ]
            tasks = [asyncio.create_task(w) for w in work]
            await asyncio.sleep(0.05)
            timings = []
            for _ in range(5):
                started = time.monotonic()
                assert (
                    await asyncio.to_thread(http_status, f"{batching_server.base_url}/v2/health/live") == 200
                )
                timings.append(time.monotonic() - started)
            await asyncio.gather(*tasks)
            return timings
        finally:
            await client.close()

    timings = asyncio.run(scenario())
    assert sorted(timings)[len(timings) // 2] < 0.25, timings
