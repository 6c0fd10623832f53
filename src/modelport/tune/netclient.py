"""The load process of `tune --measure http|grpc`: a closed loop over tritonclient's asyncio clients.

It runs in a process of its own, so that the client's encoding and socket work does not share the
server's interpreter and event loop. N coroutines share one client (HTTP: a pool of N connections;
gRPC: one channel); each sends its next request as soon as the previous answer is parsed. Requests
that complete inside the measured window count, with their latency from the call to the parsed
answer; after the window the requests in flight are awaited (bounded) and discarded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.tune.search import Level

_REQUEST_TIMEOUT_S = 30.0  # one request; past it the request counts as an error
_DRAIN_S = 10.0  # after the window, how long requests in flight may take before they are cancelled


@dataclass(frozen=True, slots=True)
class LoadJob:
    """What the load process sends: the same inputs every time, all outputs asked for."""

    protocol: str  # "http" or "grpc"
    url: str  # host:port
    model: str
    inputs: tuple[tuple[str, str, tuple[int, ...], np.ndarray], ...]
    outputs: tuple[str, ...]


def client_modules_missing(protocol: str) -> str | None:
    """Why the tritonclient module for `protocol` cannot be imported, or None when it can."""
    try:
        if protocol == "http":
            import tritonclient.http.aio
        else:
            import tritonclient.grpc.aio  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def drive_level(job: LoadJob, concurrency: int, warmup_s: float, seconds: float) -> Level:
    """Measure one level (throughput, p50, p99, errors); the entry point of the load process."""
    return _run(_level(job, concurrency, warmup_s, seconds))


def _run(level: Coroutine[Any, Any, Level]) -> Level:
    """On uvloop where installed: a slow client loop would cap what the server is seen to do."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(level)
    return uvloop.run(level)


@dataclass(slots=True)
class _Window:
    start: float
    end: float
    latencies: list[float]
    errors: int = 0


async def _level(job: LoadJob, concurrency: int, warmup_s: float, seconds: float) -> Level:
    infer, close = _client(job, concurrency)
    now = time.perf_counter()
    window = _Window(now + warmup_s, now + warmup_s + seconds, [])
    try:
        callers = [asyncio.create_task(_caller(infer, window)) for _ in range(concurrency)]
        _, stuck = await asyncio.wait(callers, timeout=warmup_s + seconds + _DRAIN_S)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
    finally:
        await close()
    latencies = np.asarray(window.latencies) * 1000.0
    if not len(latencies):
        return Level(concurrency, 0.0, 0.0, 0.0, window.errors)
    p50, p99 = (float(v) for v in np.percentile(latencies, [50, 99]))
    return Level(concurrency, len(latencies) / seconds, p50, p99, window.errors)


async def _caller(infer: Callable[[], Awaitable[None]], window: _Window) -> None:
    """One closed-loop caller, until the window ends."""
    while (sent := time.perf_counter()) < window.end:
        try:
            await infer()
        # Any failure (an error answer, a reset connection, a timeout) is one error of the level:
        # the load goes on, as a client of a served model would.
        except Exception:
            if window.start <= time.perf_counter() <= window.end:
                window.errors += 1
            await asyncio.sleep(0.001)  # a model that fails at once must not be hammered
            continue
        done = time.perf_counter()
        if window.start <= done <= window.end:
            window.latencies.append(done - sent)


def _client(
    job: LoadJob, concurrency: int
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """(send one request, close the client) for the job's protocol; tensors are encoded once."""
    if job.protocol == "http":
        import tritonclient.http as http
        import tritonclient.http.aio as http_aio

        client = http_aio.InferenceServerClient(
            job.url, conn_limit=concurrency, conn_timeout=_REQUEST_TIMEOUT_S
        )
        inputs = [http.InferInput(name, list(shape), datatype) for name, datatype, shape, _ in job.inputs]
        for tensor, (*_, data) in zip(inputs, job.inputs, strict=True):
            tensor.set_data_from_numpy(data, binary_data=True)
        outputs = [http.InferRequestedOutput(name, binary_data=True) for name in job.outputs]

        async def infer_http() -> None:
            await client.infer(job.model, inputs, outputs=outputs)

        return infer_http, client.close
    import tritonclient.grpc as grpc
    import tritonclient.grpc.aio as grpc_aio

    channel = grpc_aio.InferenceServerClient(job.url)
    tensors = [grpc.InferInput(name, list(shape), datatype) for name, datatype, shape, _ in job.inputs]
    for tensor, (*_, data) in zip(tensors, job.inputs, strict=True):
        tensor.set_data_from_numpy(data)

    async def infer_grpc() -> None:
        await channel.infer(job.model, tensors, client_timeout=_REQUEST_TIMEOUT_S)

    return infer_grpc, channel.close
