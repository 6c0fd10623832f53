"""CachingScheduler in front of a counting scheduler: hits skip it, statistics follow Triton's; the
model configs Triton refuses with the cache; and when the cache is (not) put in front at all."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from modelport.clock import Deadline, FakeClock
from modelport.config.response_cache import ResponseCacheSpec
from modelport.errors import InternalError, InvalidInput
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Outputs
from modelport.scheduling.caching import CachingScheduler, with_response_cache
from modelport.scheduling.response_cache import ResponseCache
from modelport.tensor.records import InferRequest, RequestedOutput
from modelport.testing.fakes import echo_request, spec_from_pbtxt

SECOND = 1_000_000_000
CONFIG = """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] }]
"""
CACHED = CONFIG + "response_cache { enable: true }\n"


class CountingScheduler:
    """Doubles INPUT0 into OUTPUT0 (and OUTPUT1); counts its calls; can wait for a gate or fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.stopped = False

    async def submit(self, request: InferRequest) -> Outputs:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise InternalError("model failed")
        data = request.inputs[0].data
        return {"OUTPUT0": data * 2, "OUTPUT1": data * 3}

    async def stop(self, deadline: Deadline | None = None) -> None:
        self.stopped = True


def make(
    config: str = CACHED, size: int = 1 << 20, clock: FakeClock | None = None
) -> tuple[CachingScheduler, CountingScheduler, ModelStats, ResponseCache]:
    spec = spec_from_pbtxt(config)
    inner, stats, cache = CountingScheduler(), ModelStats(response_cache=True), ResponseCache(size, clock)
    return CachingScheduler(inner, cache, spec, 1, stats, clock), inner, stats, cache


def filled(value: float, **parameters: object) -> InferRequest:
    request = echo_request(**parameters)
    request.inputs[0].data = np.full((1, 4), value, np.float32)
    return request


async def test_a_repeated_request_is_answered_from_the_cache() -> None:
    scheduler, inner, stats, _ = make()
    first = await scheduler.submit(filled(1.0))
    again = await scheduler.submit(filled(1.0))
    assert inner.calls == 1
    assert again["OUTPUT0"].tolist() == first["OUTPUT0"].tolist() == [[2.0] * 4]
    await scheduler.submit(filled(2.0))
    assert inner.calls == 2
    doc = stats.to_json("echo", "1")["inference_stats"]
    assert (doc["cache_hit"]["count"], doc["cache_miss"]["count"]) == (1, 2)
    # A hit is a success in the queue and success counts, with no compute and no inference counted.
    assert (doc["success"]["count"], doc["queue"]["count"], doc["compute_infer"]["count"]) == (1, 1, 0)
    assert stats.inference_count == 0 and stats.execution_count == 0


class StepClock(FakeClock):
    """Moves 1 µs each time it is read."""

    def now_ns(self) -> int:
        self.advance(1000)
        return super().now_ns()


async def test_hit_and_miss_durations_are_the_lookup_and_lookup_plus_insert() -> None:
    spec = spec_from_pbtxt(CACHED)
    stats, inner = ModelStats(response_cache=True), CountingScheduler()
    scheduler = CachingScheduler(inner, ResponseCache(1 << 20), spec, 1, stats, StepClock())
    await scheduler.submit(filled(1.0))  # reads: start, lookup start, lookup end, insert start, insert end
    assert (stats.cache_miss.count, stats.cache_miss.ns) == (1, 2000)
    await scheduler.submit(filled(1.0))  # reads: start, lookup start, lookup end
    assert (stats.cache_hit.count, stats.cache_hit.ns) == (1, 1000)
    # success: the hit (2 µs), plus the miss's cache time added to its request time (Triton's way); the
    # miss's own success is the inner scheduler's to record (this fake records none).
    assert (stats.success.count, stats.success.ns) == (1, 2000 + 2000)
    assert (stats.queue.count, stats.queue.ns) == (1, 1000)


async def test_only_the_outputs_asked_for_are_stored_and_they_are_part_of_the_key() -> None:
    scheduler, inner, _, cache = make()
    request = filled(1.0)
    request.outputs = [RequestedOutput("OUTPUT1")]
    await scheduler.submit(request)
    assert cache.used_bytes == 64 + 16  # OUTPUT1 only
    answer = await scheduler.submit(filled(1.0))  # all outputs: another key
    assert inner.calls == 2 and set(answer) == {"OUTPUT0", "OUTPUT1"}


async def test_failures_are_not_cached() -> None:
    scheduler, inner, stats, cache = make()
    inner.fail = True
    for _ in range(2):
        with pytest.raises(InternalError):
            await scheduler.submit(filled(1.0))
    assert inner.calls == 2 and cache.entry_count == 0
    assert stats.cache_miss.count == 0


async def test_a_response_missing_an_output_is_not_cached() -> None:
    scheduler, inner, _, cache = make()

    async def partial(request: InferRequest) -> Outputs:
        inner.calls += 1
        return {"OUTPUT0": request.inputs[0].data}

    inner.submit = partial  # type: ignore[method-assign]
    await scheduler.submit(filled(1.0))
    assert cache.entry_count == 0


async def test_concurrent_identical_misses_count_one_miss_as_triton_does() -> None:
    scheduler, inner, stats, cache = make()
    inner.gate = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.submit(filled(1.0))) for _ in range(2)]
    await asyncio.sleep(0)
    inner.gate.set()
    await asyncio.gather(*tasks)
    assert inner.calls == 2 and cache.entry_count == 1
    assert stats.cache_miss.count == 1  # the second insert found the key: no miss recorded


async def test_the_time_to_live_turns_old_entries_into_misses() -> None:
    clock = FakeClock()
    config = CACHED + 'parameters { key: "response_cache_ttl_seconds" value { string_value: "2.5" } }\n'
    scheduler, inner, _, _ = make(config, clock=clock)
    await scheduler.submit(filled(1.0))
    clock.advance(2 * SECOND)
    await scheduler.submit(filled(1.0))
    assert inner.calls == 1
    clock.advance(SECOND)
    await scheduler.submit(filled(1.0))
    assert inner.calls == 2


async def test_eviction_in_a_small_cache() -> None:
    scheduler, inner, _, cache = make(size=2 * (64 + 32))  # two responses of 2 x 16 bytes
    for value in (1.0, 2.0, 3.0):
        await scheduler.submit(filled(value))
    assert cache.evictions == 1
    await scheduler.submit(filled(1.0))  # the oldest went
    assert inner.calls == 4


async def test_stop_stops_the_model_and_drops_its_entries() -> None:
    scheduler, inner, _, cache = make()
    await scheduler.submit(filled(1.0))
    await scheduler.stop()
    assert inner.stopped and cache.entry_count == 0 and cache.used_bytes == 0


async def test_a_response_larger_than_the_cache_is_a_miss_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, inner, stats, cache = make(size=70)
    with caplog.at_level(logging.DEBUG, logger="modelport.scheduling.caching"):
        await scheduler.submit(filled(1.0))
        await scheduler.submit(filled(1.0))
    assert inner.calls == 2 and cache.entry_count == 0
    assert stats.cache_miss.count == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "model 'echo' version 1" in warnings[0].getMessage()


# --- which models get the cache ---------------------------------------------------------------------


def test_models_without_the_cache_keep_their_scheduler() -> None:
    inner = CountingScheduler()
    spec = spec_from_pbtxt(CONFIG)
    assert spec.response_cache is None
    assert with_response_cache(inner, spec, 1, ModelStats(), ResponseCache(100)) is inner


def test_a_model_enabling_the_cache_without_a_server_cache_is_served_uncached_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = CountingScheduler()
    with caplog.at_level(logging.WARNING, logger="modelport.scheduling.caching"):
        assert with_response_cache(inner, spec_from_pbtxt(CACHED), 1, ModelStats(), None) is inner
    assert "model 'echo' enables response_cache" in caplog.text and "--cache-config" in caplog.text


def test_a_time_to_live_without_the_cache_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = CONFIG + 'parameters { key: "response_cache_ttl_seconds" value { string_value: "5" } }\n'
    with caplog.at_level(logging.WARNING, logger="modelport.scheduling.caching"):
        with_response_cache(CountingScheduler(), spec_from_pbtxt(config), 1, ModelStats(), None)
    assert "'response_cache_ttl_seconds' has no effect" in caplog.text


def test_the_cache_goes_in_front_when_both_enable_it() -> None:
    spec = spec_from_pbtxt(CACHED)
    assert spec.response_cache == ResponseCacheSpec(ttl_ns=None)
    scheduler = with_response_cache(CountingScheduler(), spec, 1, ModelStats(), ResponseCache(100))
    assert isinstance(scheduler, CachingScheduler)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "model_transaction_policy { decoupled: true }",
            "Response Cache does not currently support model echo with 'decoupled' transaction policy. "
            "Please disable the response cache.",
        ),
        (
            "sequence_batching { }",
            "Response Cache does not currently support model echo with sequence batching scheduler. "
            "Please disable the response cache.",
        ),
    ],
)
def test_triton_refuses_the_cache_for_decoupled_and_sequence_models(extra: str, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        spec_from_pbtxt(CACHED + extra)
    assert error.value.message == message
    spec_from_pbtxt(CONFIG + extra)  # without the cache these configs are fine here


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", ""])
def test_a_malformed_time_to_live_is_refused(value: str) -> None:
    ttl = f'{{ key: "response_cache_ttl_seconds" value {{ string_value: "{value}" }} }}'
    config = CACHED + f"parameters {ttl}\n"
    with pytest.raises(InvalidInput, match="response_cache_ttl_seconds' must be a positive number"):
        spec_from_pbtxt(config)


def test_a_time_to_live_is_kept_in_nanoseconds() -> None:
    config = CACHED + 'parameters { key: "response_cache_ttl_seconds" value { string_value: "0.25" } }\n'
    assert spec_from_pbtxt(config).response_cache == ResponseCacheSpec(ttl_ns=250_000_000)


async def test_a_large_request_is_hashed_off_the_event_loop_to_the_same_key() -> None:
    scheduler, inner, _, _ = make(size=1 << 24)
    big = np.ones((1, (1 << 20) // 4 + 1), np.float32)  # just over the threshold
    request = echo_request()
    request.inputs[0].data = big
    await scheduler.submit(request)
    again = echo_request()
    again.inputs[0].data = big.copy()
    await scheduler.submit(again)
    assert inner.calls == 1
