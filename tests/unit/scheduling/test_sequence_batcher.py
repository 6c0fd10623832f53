"""SequenceBatcher driven with a fake clock and fake instances: slot utilization waits, the backlog,
fillers for empty slots, and stopping."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelport.clock import FakeClock
from modelport.errors import InvalidInput, ModelUnavailable
from modelport.observability.stats import ModelStats
from modelport.scheduling.instances import InstancePool
from modelport.scheduling.sequence_batcher import SequenceBatcher
from modelport.testing.fakes import EchoInstance, echo_request, spec_from_pbtxt

MS = 1_000_000
READY = '{ name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }'


def make(max_batch: int, strategy: str, instances: list[EchoInstance], clock: FakeClock) -> SequenceBatcher:
    spec = spec_from_pbtxt(
        f"max_batch_size: {max_batch}\n"
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        f"sequence_batching {{ {strategy} control_input [ {READY} ] }}\n"
    )
    return SequenceBatcher(spec, InstancePool("echo", instances, "test"), ModelStats(), clock)


def request(corrid: int, start: bool = False, end: bool = False) -> object:
    return echo_request(1, sequence_id=corrid, sequence_start=start, sequence_end=end)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


async def test_direct_waits_for_minimum_slot_utilization() -> None:
    clock, inst = FakeClock(), EchoInstance()
    batcher = make(
        4, "direct { max_queue_delay_microseconds: 10000000 minimum_slot_utilization: 0.5 }", [inst], clock
    )
    first = asyncio.create_task(batcher.submit(request(1, start=True)))  # type: ignore[arg-type]
    await settle()
    assert inst.batches == []  # 1 of 4 slots ready: under 0.5, and the delay has not passed
    second = asyncio.create_task(batcher.submit(request(2, start=True)))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert inst.batches == [[1, 1]]
    await batcher.stop()


async def test_direct_fills_empty_slots_below_the_last_ready_one() -> None:
    gate = threading.Event()
    clock, inst = FakeClock(), EchoInstance(gate)
    batcher = make(4, "direct { }", [inst], clock)
    tasks = [asyncio.create_task(batcher.submit(request(c, start=True))) for c in (1, 2, 3)]  # type: ignore[arg-type]
    await settle()  # sequence 1 runs alone in slot 0; 2 and 3 wait in slots 1 and 2
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    third = asyncio.create_task(batcher.submit(request(3, end=True)))  # type: ignore[arg-type]
    await asyncio.wait_for(third, 5)
    assert inst.batches == [[1], [1, 1, 1], [1, 1, 1]]  # the last: fillers in slots 0 and 1, then 3
    await batcher.stop()


async def test_sequences_beyond_the_slots_wait_in_the_backlog() -> None:
    clock, inst = FakeClock(), EchoInstance()
    batcher = make(1, "oldest { }", [inst], clock)
    await asyncio.wait_for(batcher.submit(request(1, start=True)), 5)  # type: ignore[arg-type]
    waiting = asyncio.create_task(batcher.submit(request(2, start=True)))  # type: ignore[arg-type]
    await settle()
    assert not waiting.done() and batcher.queued == 1  # the one slot belongs to sequence 1
    await asyncio.wait_for(batcher.submit(request(1, end=True)), 5)  # type: ignore[arg-type]
    await asyncio.wait_for(waiting, 5)
    assert len(inst.batches) == 3
    await batcher.stop()


async def test_a_request_without_start_for_an_unknown_sequence_is_refused() -> None:
    batcher = make(2, "direct { }", [EchoInstance()], FakeClock())
    with pytest.raises(InvalidInput, match="must specify the START flag"):
        await batcher.submit(request(5))  # type: ignore[arg-type]
    await batcher.stop()


async def test_stop_fails_queued_requests_and_refuses_new_ones() -> None:
    gate = threading.Event()
    clock, inst = FakeClock(), EchoInstance(gate)
    batcher = make(1, "direct { }", [inst], clock)
    running = asyncio.create_task(batcher.submit(request(1, start=True)))  # type: ignore[arg-type]
    await settle()
    queued = asyncio.create_task(batcher.submit(request(1)))  # type: ignore[arg-type]
    await settle()
    stopping = asyncio.create_task(batcher.stop())
    await settle()
    with pytest.raises(ModelUnavailable, match="is unloading"):
        await queued
    gate.set()
    await asyncio.wait_for(asyncio.gather(running, stopping), 5)
    with pytest.raises(ModelUnavailable):
        await batcher.submit(request(2, start=True))  # type: ignore[arg-type]
