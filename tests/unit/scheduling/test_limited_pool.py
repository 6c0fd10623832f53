"""RateLimitedPool under real schedulers: models sharing a resource never run more executions at once
than its count, a model waiting for another's resources is woken when they come back, waiting
models stop promptly, and pools that need no rate limiting stay plain InstancePools."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import pytest

from modelport.backends.base import Execution, InstancePlacement
from modelport.clock import Deadline
from modelport.config.settings import RateLimitResource
from modelport.config.spec import ModelSpec
from modelport.errors import ModelUnavailable
from modelport.observability.stats import ModelStats
from modelport.scheduling.dynamic_batcher import DynamicBatcher
from modelport.scheduling.instances import InstancePool
from modelport.scheduling.limited_pool import RateLimitedPool, make_pool, register_instances
from modelport.scheduling.rate_limiter import RateLimiter, Ticket
from modelport.scheduling.sequence_batcher import SequenceBatcher
from modelport.tensor.records import InferRequest
from modelport.testing.fakes import EchoInstance, echo_request, spec_from_pbtxt

IO = """
max_batch_size: 0
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] }]
"""
LIMITED = (
    "instance_group [{{ count: {count} kind: KIND_CPU "
    'rate_limiter {{ resources [{{ name: "R" count: 1 }}] }} }}]'
)
TIMEOUT_S = 10.0


class Meter:
    """How many executions run at once, across every instance that shares it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0


class MeteredInstance(EchoInstance):
    def __init__(self, meter: Meter, seconds: float = 0.01, gate: threading.Event | None = None) -> None:
        super().__init__(gate)
        self.meter = meter
        self.seconds = seconds

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        with self.meter.lock:
            self.meter.now += 1
            self.meter.most = max(self.meter.most, self.meter.now)
        try:
            time.sleep(self.seconds)
            return super().execute(requests)
        finally:
            with self.meter.lock:
                self.meter.now -= 1


def spec(name: str, count: int = 2, extra: str = "") -> ModelSpec:
    return spec_from_pbtxt(IO + LIMITED.format(count=count) + extra, name=name)


def pool_for(limiter: RateLimiter | None, model: ModelSpec, instances: list[EchoInstance]) -> InstancePool:
    group = model.instance_groups[0]
    spots = [InstancePlacement(group, i, None, 1) for i in range(len(instances))]
    return make_pool(model.name, instances, model.name, limiter, register_instances(limiter, model, spots))


def batcher(limiter: RateLimiter | None, name: str, instances: list[EchoInstance]) -> DynamicBatcher:
    model = spec(name, len(instances))
    return DynamicBatcher(model, pool_for(limiter, model, instances), ModelStats())


async def flood(batchers: list[DynamicBatcher], each: int) -> None:
    calls = [b.submit(echo_request()) for b in batchers for _ in range(each)]
    await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT_S)


@pytest.mark.parametrize(("flags", "most"), [((), 1), ((RateLimitResource("R", 2),), 2)], ids=["R=1", "R=2"])
async def test_two_models_sharing_a_resource_never_run_more_executions_at_once(
    flags: tuple[RateLimitResource, ...], most: int
) -> None:
    limiter, meter = RateLimiter(flags), Meter()
    instances = {name: [MeteredInstance(meter), MeteredInstance(meter)] for name in ("a", "b")}
    batchers = [batcher(limiter, name, insts) for name, insts in instances.items()]
    await flood(batchers, 12)
    assert meter.most == most
    assert [sum(len(i.batches) for i in insts) for insts in instances.values()] == [12, 12]
    for b in batchers:
        await b.stop()
    assert limiter.capacity() == {}  # both pools left the limiter


async def test_without_the_limiter_the_same_models_run_at_once() -> None:
    meter = Meter()
    batchers = [batcher(None, name, [MeteredInstance(meter) for _ in range(2)]) for name in ("a", "b")]
    await flood(batchers, 12)
    assert meter.most >= 2
    for b in batchers:
        await b.stop()


async def test_a_model_waiting_for_another_models_resource_runs_when_it_comes_back() -> None:
    limiter, meter, gate = RateLimiter(), Meter(), threading.Event()
    holder = batcher(limiter, "a", [MeteredInstance(meter, gate=gate)])
    waiter_instance = MeteredInstance(meter)
    waiter = batcher(limiter, "b", [waiter_instance])
    held = asyncio.create_task(holder.submit(echo_request()))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(waiter.submit(echo_request()))
    await asyncio.sleep(0.1)
    assert waiter.queued == 1 and waiter_instance.batches == []  # its instance is idle, R is not
    gate.set()
    await asyncio.wait_for(asyncio.gather(held, waiting), TIMEOUT_S)
    assert waiter_instance.batches == [[1]] and meter.most == 1
    await holder.stop()
    await waiter.stop()


async def test_a_model_waiting_for_resources_stops_within_its_deadline() -> None:
    limiter, meter, gate = RateLimiter(), Meter(), threading.Event()
    holder = batcher(limiter, "a", [MeteredInstance(meter, gate=gate)])
    waiter = batcher(limiter, "b", [MeteredInstance(meter) for _ in range(2)])
    held = asyncio.create_task(holder.submit(echo_request()))
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(waiter.submit(echo_request())) for _ in range(3)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await asyncio.wait_for(waiter.stop(Deadline(2.0)), 3.0)
    assert time.monotonic() - started < 1.0
    for task in waiting:
        with pytest.raises(ModelUnavailable, match="is unloading"):
            await task
    gate.set()
    await asyncio.wait_for(held, TIMEOUT_S)
    await holder.stop()


async def test_acquire_waits_for_the_resource() -> None:
    limiter, meter, gate = RateLimiter(), Meter(), threading.Event()
    holder = batcher(limiter, "a", [MeteredInstance(meter, gate=gate)])
    pool = pool_for(limiter, spec("b", 1), [MeteredInstance(meter)])
    held = asyncio.create_task(holder.submit(echo_request()))
    await asyncio.sleep(0.05)
    acquiring = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    assert not acquiring.done() and pool.idle_count == 0
    gate.set()
    instance = await asyncio.wait_for(acquiring, TIMEOUT_S)
    await asyncio.wait_for(pool.execute(instance, [echo_request()]), TIMEOUT_S)
    await held
    await holder.stop()
    await asyncio.to_thread(pool.close)


async def test_a_sequence_model_waits_for_the_resource_too() -> None:
    limiter, meter, gate = RateLimiter(), Meter(), threading.Event()
    holder = batcher(limiter, "a", [MeteredInstance(meter, gate=gate)])
    stateful = spec("s", 1, "\nsequence_batching { }")
    seq_instance = MeteredInstance(meter)
    sequences = SequenceBatcher(stateful, pool_for(limiter, stateful, [seq_instance]), ModelStats())
    held = asyncio.create_task(holder.submit(echo_request()))
    await asyncio.sleep(0.05)
    step = asyncio.create_task(sequences.submit(echo_request(1, sequence_id=7, sequence_start=True)))
    await asyncio.sleep(0.1)
    assert seq_instance.batches == []
    gate.set()
    await asyncio.wait_for(asyncio.gather(held, step), TIMEOUT_S)
    assert seq_instance.batches == [[1]] and meter.most == 1
    await holder.stop()
    await sequences.stop()


async def test_pools_that_need_no_rate_limiting_stay_plain(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter()
    plain = spec_from_pbtxt(IO + "instance_group [{ count: 1 kind: KIND_CPU rate_limiter { priority: 2 } }]")
    assert type(pool_for(limiter, plain, [EchoInstance()])) is InstancePool  # a priority, no resources
    assert type(pool_for(limiter, spec("a", 1), [EchoInstance()])) is RateLimitedPool
    with caplog.at_level(logging.INFO, logger="modelport.scheduling.limited_pool"):
        assert type(pool_for(None, spec("off_model", 1), [EchoInstance()])) is InstancePool
    assert [r.getMessage() for r in caplog.records] == [
        "model 'off_model': instance_group rate_limiter is ignored: the rate limiter is off "
        "(--rate-limit=execution_count turns it on)"
    ]


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__()
        self.grants = 0

    def _allocate(self) -> list[Ticket]:
        granted = super()._allocate()
        self.grants += len(granted)
        return granted


async def test_a_scheduler_waiting_to_fill_a_batch_does_not_spin_on_grants() -> None:
    limiter = CountingLimiter()
    instances = [EchoInstance(), EchoInstance()]
    model = spec_from_pbtxt(
        IO.replace("max_batch_size: 0", "max_batch_size: 8")
        + LIMITED.format(count=2)
        + "\ndynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 300000 }",
        name="a",
    )
    batcher = DynamicBatcher(model, pool_for(limiter, model, instances), ModelStats())
    call = asyncio.create_task(batcher.submit(echo_request()))
    await asyncio.sleep(0.15)  # the request waits for a fuller batch: the instances have nothing to run
    assert limiter.grants <= 4, f"{limiter.grants} grants while nothing ran"
    await asyncio.wait_for(call, TIMEOUT_S)
    assert [i.batches for i in instances] in ([[[1]], []], [[], [[1]]])
    await batcher.stop()
