"""The rate limiter in a real server: two Python models whose instances share resource "R" never run
more executions at once than R has copies (clients over HTTP and gRPC, every request answered);
with --rate-limit=off they do run at once. Too few copies on the command line fail a model's load
with Triton's message; a bad flag stops the server with Triton's message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio

from support.assertions import expect_error
from support.server import ServerProcess, running_server

# Each execution sleeps (IN seconds, or 80 ms for 0), and reports when it started and ended (wall
# clock, seconds; one process).
MODEL_PY = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            start = time.time()
            seconds = float(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            time.sleep(seconds or 0.08)
            span = np.array([start, time.time()], dtype=np.float64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SPAN", span)]))
        return responses
"""

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "SPAN" data_type: TYPE_FP64 dims: [ 2 ] }}]
instance_group [{{ count: {count} kind: KIND_CPU
  rate_limiter {{ resources [{{ name: "R" count: {need} }}] priority: {priority} }} }}]
"""
CALLS_PER_MODEL = 8  # per model, all at once: 16 executions of 80 ms


def write_repository(
    repo: Path, needs: dict[str, int], count: int = 2, priorities: dict[str, int] | None = None
) -> Path:
    for name, need in needs.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(MODEL_PY)
        priority = (priorities or {}).get(name, 0)
        config = CONFIG.format(name=name, need=need, count=count, priority=priority)
        (repo / name / "config.pbtxt").write_text(config)
    return repo


async def spans_over_both_protocols(server: ServerProcess) -> list[tuple[float, float]]:
    """Model a over HTTP and model b over gRPC, CALLS_PER_MODEL requests each, all at once."""
    http = httpaio.InferenceServerClient(server.http_url)
    grpc = grpcaio.InferenceServerClient(server.grpc_url)
    data = np.zeros(1, dtype=np.float32)

    async def over_http() -> tuple[float, float]:
        tensor = httpaio.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(data)
        start, end = (await http.infer("a", [tensor])).as_numpy("SPAN")
        return float(start), float(end)

    async def over_grpc() -> tuple[float, float]:
        tensor = grpcaio.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(data)
        start, end = (await grpc.infer("b", [tensor])).as_numpy("SPAN")
        return float(start), float(end)

    try:
        calls = [over_http() for _ in range(CALLS_PER_MODEL)] + [over_grpc() for _ in range(CALLS_PER_MODEL)]
        return list(await asyncio.wait_for(asyncio.gather(*calls), 30))
    finally:
        await http.close()
        await grpc.close()


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    # an end sorts before a start at the same moment
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--rate-limit=execution_count"], 1),  # R's count: the most one instance needs, 1
        (["--rate-limit=execution_count", "--rate-limit-resource=R:2"], 2),
    ],
    ids=["R=1", "R=2"],
)
def test_models_sharing_a_resource_never_run_more_executions_at_once_than_its_count(
    tmp_path: Path, flags: list[str], expected: int
) -> None:
    repo = write_repository(tmp_path / "repo", {"a": 1, "b": 1})
    with running_server(repo, tmp_path / "server.log", flags, grpc=True) as server:
        spans = asyncio.run(spans_over_both_protocols(server))
    assert len(spans) == 2 * CALLS_PER_MODEL  # every request answered
    assert most_at_once(spans) == expected


def test_with_the_rate_limiter_off_the_same_models_run_at_once(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {"a": 1, "b": 1})
    with running_server(repo, tmp_path / "server.log", ["--rate-limit=off"], grpc=True) as server:
        spans = asyncio.run(spans_over_both_protocols(server))
        log = server.log()
    assert most_at_once(spans) >= 3  # four instances, two models
    for model in ("a", "b"):
        assert f"model '{model}': instance_group rate_limiter is ignored: the rate limiter is off" in log


def test_too_few_copies_on_the_command_line_fail_the_load_with_tritons_message(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {"small": 1, "greedy": 3})
    flags = ["--rate-limit=execution_count", "--rate-limit-resource=R:2"]
    with (
        running_server(repo, tmp_path / "server.log", flags) as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):
        index = {row["name"]: row for row in client.get_model_repository_index()}
        assert client.is_model_ready("small") and not client.is_model_ready("greedy")
    assert index["greedy"]["state"] == "UNAVAILABLE"
    assert (
        'Resource count for "R" is limited to 2 which will prevent scheduling of one or more model '
        "instances, the minimum required count is 3"
    ) in index["greedy"]["reason"]


def test_priority_1_runs_twice_as_often_as_priority_2_while_both_wait(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {"a": 1, "b": 1}, count=1, priorities={"a": 1, "b": 2})
    with running_server(repo, tmp_path / "server.log", ["--rate-limit=execution_count"], grpc=True) as server:
        spans = asyncio.run(spans_over_both_protocols(server))  # a's spans first, then b's
    runs = sorted((start, i < CALLS_PER_MODEL) for i, (start, _) in enumerate(spans))
    first = [is_a for _, is_a in runs[: CALLS_PER_MODEL + CALLS_PER_MODEL // 2]]  # both still queued
    assert 7 <= sum(first) <= 9, "".join("a" if is_a else "b" for _, is_a in runs)


def infer(client: httpclient.InferenceServerClient, model: str, seconds: float) -> np.ndarray:
    tensor = httpclient.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.array([seconds], dtype=np.float32))
    return client.infer(model, [tensor]).as_numpy("SPAN")


def test_a_model_waiting_for_resources_unloads_within_the_deadline(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {"hog": 1, "b": 1})
    flags = ["--rate-limit=execution_count", "--exit-timeout-secs=1", "--model-control-mode=explicit",
             "--load-model=hog", "--load-model=b"]  # fmt: skip
    with (
        running_server(repo, tmp_path / "server.log", flags) as server,
        httpclient.InferenceServerClient(server.http_url, concurrency=4, network_timeout=30) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        hog = pool.submit(infer, client, "hog", 4.0)  # holds R for 4 s
        time.sleep(0.5)
        waiting = [pool.submit(infer, client, "b", 0.0) for _ in range(2)]  # wait for R
        time.sleep(0.3)
        started = time.monotonic()
        client.unload_model("b")
        assert time.monotonic() - started < 2.5  # the 1 s drain deadline, not the hog's 4 s
        for call in waiting:
            expect_error(call.result, 503, "unload")
        assert not client.is_model_ready("b") and hog.result()[1] - hog.result()[0] >= 4.0


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--rate-limit=sometimes", "invalid argument for --rate-limit"),
        ("--rate-limit-resource=R", "--rate-limit-resource option format is "),
    ],
)
def test_a_bad_flag_stops_the_server_with_tritons_message(tmp_path: Path, flag: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--model-repository", str(tmp_path), flag],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0 and message in done.stderr
