"""Graceful shutdown: SIGTERM while requests are queued and running.

Readiness turns false and new inference gets 503 at once, while every request already queued or
running completes; then the process exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

from support.models import SLOW_WIDTH, slow_model, write_stuck_model
from support.server import ServerProcess, http_status

MATMULS = 12
CONFIG = """
name: "slowish"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "slowish" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "slowish" / "1" / "model.onnx").write_bytes(slow_model(MATMULS).SerializeToString())
    (tmp_path / "repo" / "slowish" / "config.pbtxt").write_text(CONFIG)
    return tmp_path / "repo"


def request_input(rows: int, module: object = aiohttpclient) -> object:
    tensor = module.InferInput("INPUT0", [1, rows], "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.ones((1, rows), dtype=np.float32))
    return tensor


def time_one_request(server: ServerProcess, rows: int) -> float:
    client = httpclient.InferenceServerClient(server.url)
    try:
        client.infer("slowish", [request_input(rows, httpclient)])  # warm
        start = time.perf_counter()
        client.infer("slowish", [request_input(rows, httpclient)])
        return time.perf_counter() - start
    finally:
        client.close()


async def run_drain(
    server: ServerProcess, rows: int, count: int
) -> tuple[list[object], int | None, int | None, str]:
    client = aiohttpclient.InferenceServerClient(server.url, conn_limit=count + 4)
    try:
        calls = [asyncio.ensure_future(client.infer("slowish", [request_input(rows)])) for _ in range(count)]
        await asyncio.sleep(0.15)  # the first is running, the rest are queued behind it
        os.kill(server.pid, signal.SIGTERM)
        await asyncio.sleep(0.05)
        ready = await asyncio.to_thread(http_status, f"{server.base_url}/v2/health/ready")
        live = await asyncio.to_thread(http_status, f"{server.base_url}/v2/health/live")
        try:
            await client.infer("slowish", [request_input(4)])
            late = "accepted"
        except Exception as exc:
            late = str(exc)
        results = await asyncio.gather(*calls, return_exceptions=True)
        return list(results), ready, live, late
    finally:
        await client.close()


def test_sigterm_drains_queued_and_running_requests(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, tmp_path / "shutdown.log", ("--exit-timeout-secs=20",))
    server.start()
    try:
        rows = 64
        while time_one_request(server, rows) < 0.1 and rows < 8192:
            rows *= 2
        count = 10  # about a second of work queued behind one instance
        results, ready, live, late = asyncio.run(run_drain(server, rows, count))
        assert server.process is not None
        code = server.process.wait(timeout=30)
    except BaseException:
        server.kill()
        raise
    failures = [r for r in results if isinstance(r, BaseException)]
    print(f"\nSIGTERM drain: {count} in flight, {len(failures)} failed; late request: {late}")
    assert failures == [], failures
    expected = rows * SLOW_WIDTH
    assert all(float(r.as_numpy("OUTPUT0")[0, 0]) == expected for r in results)  # type: ignore[union-attr]
    assert ready == 400  # not ready while draining
    assert live == 200  # but alive: probes must not kill a draining pod
    assert "Server exiting" in late or "503" in late
    assert code == 0, server.log()
    assert "shutting down" in server.log()
    assert not server.leak_reports(), server.log()


def test_sigterm_with_nothing_in_flight_exits_at_once(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, tmp_path / "idle.log", ("--exit-timeout-secs=20",))
    server.start()
    start = time.monotonic()
    try:
        code = server.stop(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
    assert code == 0
    assert time.monotonic() - start < 5
    assert not server.leak_reports(), server.log()


# --- a model that never returns: shutdown stays within --exit-timeout-secs -----------------------
@pytest.fixture(params=[False, True], ids=["in-thread", "process"])
def stuck_repo(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    write_stuck_model(tmp_path / "stuck_repo", isolated=request.param)
    return tmp_path / "stuck_repo"


async def _stuck_request(server: ServerProcess, signals: int, between_s: float) -> tuple[str, float]:
    """One request into the stuck model, then `signals` SIGTERMs; its error and the seconds to exit."""
    client = aiohttpclient.InferenceServerClient(server.url)
    try:
        tensor = aiohttpclient.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(np.ones(1, np.float32))
        call = asyncio.ensure_future(client.infer("stuck", [tensor]))
        await asyncio.sleep(0.5)  # running (and stuck) in the model
        assert not call.done()
        start = time.monotonic()
        for index in range(signals):
            if index:
                await asyncio.sleep(between_s)
            os.kill(server.pid, signal.SIGTERM)
        try:
            await call
            outcome = "answered"
        except Exception as exc:
            outcome = str(exc)
        assert server.process is not None
        await asyncio.to_thread(server.process.wait, 30)
        return outcome, time.monotonic() - start
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("exit_timeout", "signals", "bound_s"),
    [(2, 1, 2 + 1.0), (30, 2, 0.3 + 1.0)],
    ids=["deadline", "second-signal"],
)
def test_a_stuck_model_cannot_hold_shutdown_past_its_bound(
    stuck_repo: Path, tmp_path: Path, exit_timeout: int, signals: int, bound_s: float
) -> None:
    """One deadline covers the whole shutdown; a second signal ends every wait at once.

    The stuck request is answered with an error (not a dropped connection) before the process exits.
    """
    server = ServerProcess(stuck_repo, tmp_path / "stuck.log", (f"--exit-timeout-secs={exit_timeout}",))
    server.start()
    try:
        outcome, took = asyncio.run(_stuck_request(server, signals, 0.3))
    except BaseException:
        server.kill()
        raise
    print(f"\nstuck model, exit timeout {exit_timeout}s, {signals} signal(s): exit in {took:.2f}s; {outcome}")
    assert took < bound_s, server.log()
    assert "unloaded before the request finished" in outcome, outcome
    assert server.process is not None and server.process.returncode == 0, server.log()
    assert not server.leak_reports(), server.log()
