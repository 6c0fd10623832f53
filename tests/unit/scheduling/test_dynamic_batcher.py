"""DynamicBatcher driven with a fake clock and fake instances."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from modelport.backends.base import Execution
from modelport.clock import FakeClock
from modelport.errors import InternalError, ModelUnavailable
from modelport.observability.stats import ModelStats
from modelport.scheduling.dynamic_batcher import DynamicBatcher
from modelport.scheduling.instances import InstancePool
from modelport.tensor.records import InferRequest
from modelport.testing.fakes import EchoInstance, echo_request, spec_from_pbtxt

MS = 1_000_000

BASE = """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
"""


def make(config: str, instances: list[EchoInstance], clock: FakeClock) -> tuple[DynamicBatcher, ModelStats]:
    stats = ModelStats()
    spec = spec_from_pbtxt(BASE + config)
    batcher = DynamicBatcher(spec, InstancePool("echo", instances, "test"), stats, clock)
    return batcher, stats


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


async def test_requests_arriving_apart_are_batched_at_the_preferred_size() -> None:
    clock, inst = FakeClock(), EchoInstance()
    batcher, stats = make(
        "dynamic_batching { preferred_batch_size: [4] max_queue_delay_microseconds: 10000000 }", [inst], clock
    )
    tasks = []
    for _ in range(4):
        tasks.append(asyncio.create_task(batcher.submit(echo_request())))
        await settle()
        clock.advance(1 * MS)
    await asyncio.gather(*tasks)
    assert inst.batches == [[1, 1, 1, 1]]
    assert (stats.execution_count, stats.inference_count) == (1, 4)
    await batcher.stop()


async def test_leftovers_wait_for_the_delay_then_go() -> None:
    clock, inst = FakeClock(), EchoInstance()
    batcher, _ = make(
        "dynamic_batching { preferred_batch_size: [4] max_queue_delay_microseconds: 200000 }", [inst], clock
    )
    tasks = [asyncio.create_task(batcher.submit(echo_request())) for _ in range(2)]
    await settle()
    assert inst.batches == [] and batcher.queued == 2
    clock.advance(199 * MS)
    batcher.reevaluate()
    await settle()
    assert inst.batches == []
    clock.advance(1 * MS)
    batcher.reevaluate()
    await asyncio.gather(*tasks)
    assert inst.batches == [[1, 1]]
    await batcher.stop()


async def test_batches_never_exceed_max_batch_size_and_shapes_never_mix() -> None:
    clock, gate = FakeClock(), threading.Event()
    inst = EchoInstance(gate)
    batcher, _ = make("dynamic_batching { }", [inst], clock)
    first = asyncio.create_task(batcher.submit(echo_request(width=4)))
    await settle()  # the instance is now busy with `first`
    tasks = [asyncio.create_task(batcher.submit(echo_request(rows=3, width=4))) for _ in range(4)]
    tasks += [asyncio.create_task(batcher.submit(echo_request(rows=1, width=5)))]
    await settle()
    gate.set()
    await asyncio.gather(first, *tasks)
    assert inst.batches == [[1], [3, 3], [3, 3], [1]]
    assert all(sum(b) <= 8 for b in inst.batches)
    await batcher.stop()


async def test_two_instances_run_batches_at_once() -> None:
    clock, gate = FakeClock(), threading.Event()
    a, b = EchoInstance(gate), EchoInstance(gate)
    batcher, _ = make("", [a, b], clock)  # no dynamic_batching: one request per execution
    tasks = [asyncio.create_task(batcher.submit(echo_request())) for _ in range(2)]
    await settle()
    assert a.running == 1 and b.running == 1
    gate.set()
    await asyncio.gather(*tasks)
    await batcher.stop()


async def test_preserve_ordering_releases_responses_in_arrival_order() -> None:
    clock = FakeClock()
    slow_gate, fast_gate = threading.Event(), threading.Event()
    slow, fast = EchoInstance(slow_gate), EchoInstance(fast_gate)
    batcher, _ = make(
        "dynamic_batching { preserve_ordering: true max_queue_delay_microseconds: 0 }", [slow, fast], clock
    )
    done: list[str] = []

    async def call(name: str, width: int) -> None:
        await batcher.submit(echo_request(width=width))
        done.append(name)

    first = asyncio.create_task(call("first", 4))
    await settle()
    second = asyncio.create_task(call("second", 5))  # different shape: its own batch, other instance
    await settle()
    fast_gate.set()
    await settle()
    assert done == []  # second finished executing but must wait for first
    slow_gate.set()
    await asyncio.gather(first, second)
    assert done == ["first", "second"]
    await batcher.stop()


async def test_higher_priority_level_is_served_first() -> None:
    clock, gate = FakeClock(), threading.Event()
    inst = EchoInstance(gate)
    batcher, _ = make("dynamic_batching { priority_levels: 2 default_priority_level: 2 }", [inst], clock)
    order: list[str] = []

    async def call(name: str, priority: int, width: int) -> None:
        await batcher.submit(echo_request(width=width, priority=priority))
        order.append(name)

    busy = asyncio.create_task(call("busy", 2, 3))
    await settle()
    low = asyncio.create_task(call("low", 2, 4))
    await settle()
    high = asyncio.create_task(call("high", 1, 5))
    await settle()
    gate.set()
    await asyncio.gather(busy, low, high)
    assert order == ["busy", "high", "low"]
    await batcher.stop()


async def test_max_queue_size_rejects_at_once_with_unavailable() -> None:
    clock, gate = FakeClock(), threading.Event()
    batcher, stats = make(
        "dynamic_batching { default_queue_policy { max_queue_size: 2 } }", [EchoInstance(gate)], clock
    )
    busy = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    queued = [asyncio.create_task(batcher.submit(echo_request())) for _ in range(2)]
    await settle()
    with pytest.raises(ModelUnavailable, match="Exceeds maximum queue size"):
        await batcher.submit(echo_request(request_id="r9"))
    gate.set()
    await asyncio.gather(busy, *queued)
    assert stats.fail.count == 0  # queue-full rejections are not failures, as in Triton
    await batcher.stop()


async def test_timeout_fires_while_the_only_instance_is_busy() -> None:
    clock, gate = FakeClock(), threading.Event()
    inst = EchoInstance(gate)
    batcher, stats = make(
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 100000 } }", [inst], clock
    )
    busy = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    waiting = asyncio.create_task(batcher.submit(echo_request(request_id="late")))
    await settle()
    clock.advance(100 * MS)
    batcher.reevaluate()
    with pytest.raises(ModelUnavailable, match=r"\[request id: late\] Request timeout expired"):
        await asyncio.wait_for(waiting, 2)
    assert inst.running == 1  # still busy: the deadline did not wait for the running batch
    assert stats.failures_by_reason["REJECTED"] == 1
    gate.set()
    await busy
    await batcher.stop()


async def test_request_timeout_override_is_honoured_when_allowed() -> None:
    clock, gate = FakeClock(), threading.Event()
    batcher, _ = make(
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 10000000 "
        "allow_timeout_override: true } }",
        [EchoInstance(gate)],
        clock,
    )
    busy = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    short = asyncio.create_task(batcher.submit(echo_request(timeout=1000)))
    await settle()
    clock.advance(2 * MS)
    batcher.reevaluate()
    with pytest.raises(ModelUnavailable, match="Request timeout expired"):
        await asyncio.wait_for(short, 2)
    gate.set()
    await busy
    await batcher.stop()


async def test_a_request_timeout_holds_while_its_batch_runs() -> None:
    """Answered at its deadline even though its batch is on the instance; the late result is dropped."""
    clock, gate = FakeClock(), threading.Event()
    inst = EchoInstance(gate)
    batcher, stats = make(
        "dynamic_batching { default_queue_policy { allow_timeout_override: true } }", [inst], clock
    )
    timed = asyncio.create_task(batcher.submit(echo_request(request_id="timed", timeout=50_000)))
    untimed = asyncio.create_task(batcher.submit(echo_request(request_id="untimed")))
    await settle()
    assert inst.running == 1  # the timed request's batch runs (the other waits for the instance)
    clock.advance(49 * MS)
    batcher.reevaluate()
    await settle()
    assert not timed.done()
    clock.advance(1 * MS)
    batcher.reevaluate()
    with pytest.raises(ModelUnavailable, match=r"\[request id: timed\] Request timeout expired"):
        await asyncio.wait_for(timed, 2)
    assert inst.running == 1 and not untimed.done()
    gate.set()
    assert (await asyncio.wait_for(untimed, 5))["OUTPUT0"].shape == (1, 4)
    assert stats.failures_by_reason["REJECTED"] == 1 and stats.success.count == 1
    await batcher.stop()


async def test_delay_action_keeps_the_expired_request_behind_others() -> None:
    clock, gate = FakeClock(), threading.Event()
    inst = EchoInstance(gate)
    batcher, _ = make(
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 1000 "
        "timeout_action: DELAY } }",
        [inst],
        clock,
    )
    order: list[str] = []

    async def call(name: str, width: int) -> None:
        await batcher.submit(echo_request(width=width))
        order.append(name)

    busy = asyncio.create_task(call("busy", 3))
    await settle()
    expired = asyncio.create_task(call("expired", 4))
    await settle()
    clock.advance(5 * MS)
    batcher.reevaluate()
    await settle()
    fresh = asyncio.create_task(call("fresh", 5))
    await settle()
    gate.set()
    await asyncio.gather(busy, expired, fresh)
    assert order == ["busy", "fresh", "expired"]
    await batcher.stop()


async def test_cancelled_callers_free_their_queue_slot() -> None:
    clock, gate = FakeClock(), threading.Event()
    batcher, stats = make(
        "dynamic_batching { default_queue_policy { max_queue_size: 1 } }", [EchoInstance(gate)], clock
    )
    busy = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    abandoned = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    abandoned.cancel()
    await settle()
    assert batcher.queued == 0 and stats.pending == 0
    replacement = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    gate.set()
    await asyncio.gather(busy, replacement)
    await batcher.stop()


async def test_backend_error_fails_only_that_batch() -> None:
    clock = FakeClock()
    batcher, stats = make("", [EchoInstance(fail=True)], clock)
    with pytest.raises(Exception, match="asked to fail"):
        await batcher.submit(echo_request())
    assert stats.failures_by_reason["BACKEND"] == 1
    await batcher.stop()


async def test_stop_fails_queued_requests_and_refuses_new_ones() -> None:
    clock, gate = FakeClock(), threading.Event()
    batcher, _ = make("", [EchoInstance(gate)], clock)
    busy = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    queued = asyncio.create_task(batcher.submit(echo_request()))
    await settle()
    stopping = asyncio.create_task(batcher.stop())
    await settle()
    gate.set()
    await stopping
    await busy  # the running batch finished normally
    with pytest.raises(ModelUnavailable):
        await queued
    with pytest.raises(ModelUnavailable):
        await batcher.submit(echo_request())


class _OnePermitPerBatch(EchoInstance):
    """An echo instance that runs one batch per permit released by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        if not self.permits.acquire(timeout=10):
            raise TimeoutError("the test released no permit")
        return super().execute(requests)


async def test_the_freed_instance_gets_the_next_batch_before_answers_go_out() -> None:
    inst = _OnePermitPerBatch()
    pool = InstancePool("echo", [inst], "test")
    batcher = DynamicBatcher(spec_from_pbtxt(BASE + "dynamic_batching { }"), pool, ModelStats(), FakeClock())
    first = asyncio.create_task(batcher.submit(echo_request()))
    await settle()  # running, waiting for its permit
    waiting = [asyncio.create_task(batcher.submit(echo_request())) for _ in range(3)]
    await settle()
    inst.permits.release()
    await first
    # When the first caller resumes, the three queued requests already hold the instance as one batch.
    assert pool.idle_count == 0 and batcher.queued == 0
    inst.permits.release()
    await asyncio.gather(*waiting)
    assert inst.batches == [[1], [1, 1, 1]]
    await batcher.stop()


class _AnswersShort(EchoInstance):
    """An echo instance whose backend drops the last request's result."""

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        execution = super().execute(requests)
        return Execution(execution.results[:-1], execution.timing)


async def test_a_batch_answered_short_fails_every_request_instead_of_hanging() -> None:
    clock, inst = FakeClock(), _AnswersShort()
    batcher, stats = make(
        "dynamic_batching { preferred_batch_size: [3] max_queue_delay_microseconds: 10000000 }", [inst], clock
    )
    calls = [asyncio.create_task(batcher.submit(echo_request())) for _ in range(3)]
    answers = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=5)
    assert inst.batches == [[1, 1, 1]]
    for answer in answers:
        assert isinstance(answer, InternalError)
        assert answer.message == "model 'echo': the backend returned 2 results for a batch of 3 requests"
    assert stats.failures_by_reason["BACKEND"] == 3
    await batcher.stop()
