"""The in-process load generator (the default meter): N coroutines call the core back to back.

Each coroutine sends its next request as soon as the previous one is answered. After a warm-up,
every request that completes inside the measured window counts, with its latency from the call to
the answer. No sockets and no codecs are involved: what is measured is the model's scheduling and
compute, which is what the tuned knobs change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import InvalidInput, ModelportError
from modelport.tensor.records import InferInput, InferRequest
from modelport.tune.search import Level

Tensor = tuple[str, str, tuple[int, ...], np.ndarray]  # name, datatype, shape, data


def input_tensors(spec: ModelSpec, seed: int = 0) -> list[Tensor]:
    """Inputs of batch size 1 with random data (short strings for BYTES); -1 dims become 1."""
    rng = np.random.default_rng(seed)
    batch = (1,) if spec.max_batch_size > 0 else ()
    tensors: list[Tensor] = []
    for tensor in spec.inputs:
        if tensor.optional:
            continue
        if tensor.is_shape_tensor:
            raise InvalidInput(
                f"model '{spec.name}': input '{tensor.name}' is a shape tensor, which tune cannot fill"
            )
        shape = batch + tuple(d if d > 0 else 1 for d in tensor.dims)
        tensors.append((tensor.name, tensor.datatype.name, shape, _random(tensor.datatype.name, shape, rng)))
    return tensors


def request_factory(spec: ModelSpec, seed: int = 0) -> Callable[[], InferRequest]:
    """In-process requests carrying `input_tensors(spec, seed)`."""
    tensors = input_tensors(spec, seed)

    def make() -> InferRequest:
        return InferRequest(
            model_name=spec.name,
            inputs=[InferInput(name, datatype, shape, data) for name, datatype, shape, data in tensors],
        )

    return make


def _random(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BYTES":
        return np.full(shape, b"modelport", dtype=object)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if datatype.startswith(("INT", "UINT")):
        return rng.integers(0, 8, size=shape).astype(datatype.lower())
    if datatype == "BF16":
        raise InvalidInput("tune cannot build BF16 inputs")
    return rng.random(size=shape, dtype=np.float32).astype(
        {"FP16": np.float16, "FP64": np.float64}.get(datatype, np.float32)
    )


@dataclass(slots=True)
class _Window:
    start: float
    end: float
    latencies: list[float]
    errors: int = 0


async def measure_level(
    server: InferenceServer,
    make_request: Callable[[], InferRequest],
    concurrency: int,
    warmup_s: float,
    seconds: float,
) -> Level:
    """Throughput (inferences/s) and p50/p99 latency at `concurrency` requests in flight."""
    now = time.perf_counter()
    window = _Window(now + warmup_s, now + warmup_s + seconds, [])
    await asyncio.gather(*(_client(server, make_request, window) for _ in range(concurrency)))
    latencies = np.asarray(window.latencies) * 1000.0
    if not len(latencies):
        return Level(concurrency, 0.0, 0.0, 0.0, window.errors)
    p50, p99 = (float(v) for v in np.percentile(latencies, [50, 99]))
    return Level(concurrency, len(latencies) / seconds, p50, p99, window.errors)


async def _client(server: InferenceServer, make_request: Callable[[], InferRequest], window: _Window) -> None:
    """One closed-loop caller: a new request as soon as the last is answered, until the window ends."""
    while (sent := time.perf_counter()) < window.end:
        try:
            await server.infer(make_request())
        except ModelportError:
            if window.start <= time.perf_counter() <= window.end:
                window.errors += 1
            await asyncio.sleep(0)  # a model that fails at once must not starve the loop
            continue
        done = time.perf_counter()
        if window.start <= done <= window.end:
            window.latencies.append(done - sent)


class Meter(Protocol):
    """Measures one concurrency level of the model last given to `prepare`."""

    def prepare(self, spec: ModelSpec) -> None: ...

    async def level(self, concurrency: int, warmup_s: float, seconds: float) -> Level: ...


class InProcessMeter:
    """Levels measured by calling the server's core directly (the default)."""

    def __init__(self, server: InferenceServer) -> None:
        self._server = server
        self._make: Callable[[], InferRequest] | None = None

    def prepare(self, spec: ModelSpec) -> None:
        self._make = request_factory(spec)

    async def level(self, concurrency: int, warmup_s: float, seconds: float) -> Level:
        assert self._make is not None, "prepare() comes first"
        return await measure_level(self._server, self._make, concurrency, warmup_s, seconds)
