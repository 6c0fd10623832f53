"""InstancePool: worker threads, idle hand-out, and release only when an execution really ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from modelport.backends.base import Execution
from modelport.errors import InternalError
from modelport.scheduling.instances import InstancePool
from modelport.tensor.records import InferRequest
from modelport.testing.fakes import EchoInstance, echo_request


class _Exploding:
    """A backend that raises instead of returning per-request errors."""

    closed_on: str | None = None

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        raise RuntimeError("kaboom")

    def close(self) -> None:
        self.closed_on = threading.current_thread().name

    def abort(self) -> bool:
        return False


async def test_a_raising_backend_fails_each_request_and_frees_the_instance() -> None:
    inst = _Exploding()
    pool = InstancePool("model", [inst], "model-v1")
    acquired = pool.try_acquire()
    assert acquired is inst
    results = (await pool.execute(acquired, [echo_request(), echo_request()])).results
    assert len(results) == 2
    assert all(isinstance(r, InternalError) and "execution failed: kaboom" in r.message for r in results)
    assert pool.idle_count == 1
    await asyncio.to_thread(pool.close)
    assert inst.closed_on == "model-v1-0"  # closed on its own worker thread


class _MiscountingInstance(EchoInstance):
    """An echo instance whose backend returns `extra` more (or fewer) results than requests."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        execution = super().execute(requests)
        results = execution.results
        results = results + results[: self.extra] if self.extra > 0 else results[: len(results) + self.extra]
        return Execution(results, execution.timing)


@pytest.mark.parametrize("extra", [-1, -3, 1])
async def test_a_result_count_that_is_not_one_per_request_fails_the_whole_batch(extra: int) -> None:
    pool = InstancePool("adder", [_MiscountingInstance(extra)], "adder-v1")
    instance = pool.try_acquire()
    assert instance is not None
    execution = await pool.execute(instance, [echo_request(), echo_request(), echo_request()])
    results, timing = execution.results, execution.timing
    assert len(results) == 3
    expected = f"model 'adder': the backend returned {3 + extra} results for a batch of 3 requests"
    assert all(isinstance(r, InternalError) and r.message == expected for r in results)
    assert timing.infer_ns > 0  # the backend's own timing is kept
    assert pool.idle_count == 1
    await asyncio.to_thread(pool.close)


async def test_a_cancelled_caller_does_not_free_a_running_instance() -> None:
    gate = threading.Event()
    inst = EchoInstance(gate)
    pool = InstancePool("m", [inst], "m")
    acquired = pool.try_acquire()
    assert acquired is not None
    caller = asyncio.create_task(pool.execute(acquired, [echo_request()]))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert pool.idle_count == 0 and inst.running == 1  # still executing: not handed out again
    gate.set()
    instance = await asyncio.wait_for(pool.acquire(), timeout=5)
    assert instance is inst and inst.running == 0
    await asyncio.to_thread(pool.close)


async def test_acquire_waits_for_a_release_in_turn() -> None:
    gate = threading.Event()
    a, b = EchoInstance(gate), EchoInstance(gate)
    pool = InstancePool("m", [a, b], "m")
    first, second = pool.try_acquire(), pool.try_acquire()
    assert (first, second) == (a, b) and pool.try_acquire() is None
    runs = [asyncio.create_task(pool.execute(inst, [echo_request()])) for inst in (a, b)]
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    gate.set()
    await asyncio.gather(*runs)
    assert await asyncio.wait_for(waiter, timeout=5) in (a, b)
    assert pool.idle_count == 1
    await asyncio.to_thread(pool.close)


class _RecordingInstance(EchoInstance):
    """An echo instance that may run inline and records the thread of every execution; it can
    be made to burn CPU per execution."""

    may_run_inline = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.burn_s = 0.0

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        self.threads.append(threading.current_thread().name)
        end = time.thread_time() + self.burn_s
        while time.thread_time() < end:
            pass
        return super().execute(requests)


async def _run_batches(pool: InstancePool, count: int) -> None:
    for _ in range(count):
        instance = pool.try_acquire()
        assert instance is not None
        results = (await pool.execute(instance, [echo_request()])).results
        assert not isinstance(results[0], Exception)


async def test_a_tiny_model_moves_to_the_event_loop_and_back_when_its_executions_grow() -> None:
    inst = _RecordingInstance()
    pool = InstancePool("tiny", [inst], "tiny-v1")
    await _run_batches(pool, 40)
    loop_thread = threading.current_thread().name
    assert inst.threads[0] == "tiny-v1-0"  # measured on its own thread first
    assert inst.threads[-1] == loop_thread  # then run inline: the hand-off costs more than the work
    inst.burn_s = 0.002  # executions grow far past the bound: back to the thread
    await _run_batches(pool, 20)
    assert inst.threads[-1] == "tiny-v1-0"
    await asyncio.to_thread(pool.close)


async def test_an_instance_that_may_not_run_inline_stays_on_its_thread() -> None:
    inst = EchoInstance()
    pool = InstancePool("plain", [inst], "plain-v1")
    on_threads: list[str] = []
    original = inst.execute

    def recording(requests: Sequence[InferRequest]) -> Execution:
        on_threads.append(threading.current_thread().name)
        return original(requests)

    inst.execute = recording  # type: ignore[method-assign]
    await _run_batches(pool, 40)
    assert set(on_threads) == {"plain-v1-0"}
    await asyncio.to_thread(pool.close)


async def test_a_model_that_waits_without_using_cpu_stays_on_its_thread() -> None:
    """A sleeping (or I/O-bound) model has a tiny CPU time but must never block the event loop."""
    inst = _RecordingInstance()
    original = inst.execute

    def sleeping(requests: Sequence[InferRequest]) -> Execution:
        time.sleep(0.001)
        return original(requests)

    inst.execute = sleeping  # type: ignore[method-assign]
    pool = InstancePool("sleepy", [inst], "sleepy-v1")
    await _run_batches(pool, 40)
    assert set(inst.threads) == {"sleepy-v1-0"}
    await asyncio.to_thread(pool.close)


async def test_an_inline_execution_that_blocks_the_loop_sends_the_instance_back_at_once() -> None:
    inst = _RecordingInstance()
    pool = InstancePool("tiny", [inst], "tiny-v1")
    await _run_batches(pool, 40)
    loop_thread = threading.current_thread().name
    assert inst.threads[-1] == loop_thread
    original = inst.execute

    def blocking_once(requests: Sequence[InferRequest]) -> Execution:
        inst.execute = original  # type: ignore[method-assign]
        time.sleep(0.005)
        return original(requests)

    inst.execute = blocking_once  # type: ignore[method-assign]
    await _run_batches(pool, 2)
    assert inst.threads[-2:] == [loop_thread, "tiny-v1-0"]
    await asyncio.to_thread(pool.close)
