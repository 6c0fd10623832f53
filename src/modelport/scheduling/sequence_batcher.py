"""SequenceBatcher: the scheduler of a stateful model version (Triton's sequence batcher).

Every request carries a correlation ID; a sequence begins with a START request and ends with an
END request. A sequence holds one slot of one instance from its start to its end (or until it is
idle for max_sequence_idle_microseconds), so an instance that keeps state per slot or per
correlation ID sees all of a sequence; sequences beyond the free slots wait in a backlog. A
sequence has at most one request executing, and its implicit state passes from each request's
outputs to the next request's inputs.

Strategies, per instance:
* direct: a batch holds each slot in its own place; empty slots get filler requests with READY
  false. With max_queue_delay and minimum_slot_utilization, a batch waits for enough ready slots.
* oldest: the oldest ready requests of the instance's candidate sequences form the batch, with
  the dynamic batcher's rules (preferred sizes, max queue delay).

All decisions run on the event loop, when a request arrives, an execution ends or a timer fires.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from modelport.backends.base import Execution, ModelInstance
from modelport.clock import Clock, Deadline, MonotonicClock
from modelport.config.sequence import SequenceBatchingSpec
from modelport.config.spec import ModelSpec
from modelport.errors import InvalidInput, ModelportError, ModelUnavailable, with_request_id
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Outputs, resolve
from modelport.scheduling.batch_policy import BatchRules, decide
from modelport.scheduling.instances import InstancePool, close_pool
from modelport.scheduling.sequence_inputs import (
    CorrelationId,
    SequenceInputs,
    correlation_id,
    sequence_flags,
    signature,
)
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Item:
    """One queued request of a sequence (also what the oldest strategy's batch policy looks at)."""

    request: InferRequest
    future: asyncio.Future[Outputs]
    enqueue_ns: int
    start: bool
    end: bool
    sequence: _Sequence
    signature: Any = None
    batch_size: int = 1


@dataclass(slots=True, eq=False)
class _Sequence:
    corrid: CorrelationId
    last_seen_ns: int
    queue: deque[_Item] = field(default_factory=deque)
    slot: _Slot | None = None
    state: dict[str, np.ndarray] | None = None
    in_flight: bool = False


@dataclass(slots=True, eq=False)
class _Slot:
    lane: _Lane
    index: int
    sequence: _Sequence | None = None

    def __lt__(self, other: _Slot) -> bool:  # free slots: lowest index first, spread over instances
        return (self.index, self.lane.number) < (other.index, other.lane.number)


@dataclass(slots=True, eq=False)
class _Lane:
    """One instance and its sequence slots."""

    number: int
    instance: ModelInstance
    slots: list[_Slot] = field(default_factory=list)
    running: list[tuple[_Item | None, InferRequest]] | None = None  # the batch executing, if any
    timer: asyncio.TimerHandle | None = None


class SequenceBatcher:
    """Admits the requests of one stateful model version and runs them sequence by sequence."""

    def __init__(
        self, spec: ModelSpec, pool: InstancePool, stats: ModelStats, clock: Clock | None = None
    ) -> None:
        assert spec.sequence_batching is not None
        self._spec: SequenceBatchingSpec = spec.sequence_batching
        self._model = spec.name
        self._batching = spec.max_batch_size > 0
        self._pool = pool
        self._stats = stats
        self._clock = clock or MonotonicClock()
        self._inputs = SequenceInputs(self._spec, self._batching)
        slots_per_lane = max(1, spec.max_batch_size)
        if self._spec.strategy == "oldest" and self._spec.max_candidate_sequences > 0:
            slots_per_lane = self._spec.max_candidate_sequences
        self._lanes = [_Lane(n, instance) for n, instance in enumerate(pool.instances)]
        self._free: list[_Slot] = []
        for lane in self._lanes:
            lane.slots = [_Slot(lane, i) for i in range(slots_per_lane)]
            self._free.extend(lane.slots)
        heapq.heapify(self._free)
        self._rules = BatchRules(
            max_batch_size=max(1, spec.max_batch_size),
            preferred_batch_sizes=self._spec.preferred_batch_sizes,
            max_queue_delay_ns=self._spec.max_queue_delay_us * 1000,
        )
        self._sequences: dict[CorrelationId, _Sequence] = {}  # started and not yet sent their END
        self._backlog: deque[_Sequence] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._stopped = False
        pool.on_available(self._review_all)  # a rate-limited pool's instance got its resources

    @property
    def queued(self) -> int:
        return sum(len(s.queue) for s in self._tracked())

    async def submit(self, request: InferRequest) -> Outputs:
        if self._stopped:
            raise ModelUnavailable(with_request_id(request.id, f"model '{self._model}' is unloading"))
        if request.batch_size > 1:
            raise InvalidInput(
                f"inference request to model '{self._model}' must specify batch-size 1 due to requirements "
                f"of sequence batcher"
            )
        corrid = correlation_id(request, self._spec, self._model)
        start, end = sequence_flags(request)
        sequence = self._sequences.get(corrid)
        if sequence is None and not start:
            raise InvalidInput(
                f"inference request for sequence {corrid} to model '{self._model}' must specify the START "
                f"flag on the first request of the sequence"
            )
        now = self._clock.now_ns()
        if sequence is None:
            sequence = self._begin(corrid, now)
        elif start:
            log.warning(
                "sequence %s for model '%s' has a conflict. The previous sequence did not end before this "
                "sequence start. Previous sequence will be terminated early.",
                corrid,
                self._model,
            )
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        sequence.queue.append(_Item(request, future, now, start, end, sequence))
        sequence.last_seen_ns = now
        self._stats.pending += 1
        if end:
            del self._sequences[corrid]  # a later request with this ID must start a new sequence
        if sequence.slot is not None:
            self._review(sequence.slot.lane)
        self._arm_reaper()
        return await future

    def _begin(self, corrid: CorrelationId, now: int) -> _Sequence:
        sequence = _Sequence(corrid, now)
        self._sequences[corrid] = sequence
        if self._free:
            self._seat(sequence, heapq.heappop(self._free))
        else:
            self._backlog.append(sequence)
        return sequence

    def _seat(self, sequence: _Sequence, slot: _Slot) -> None:
        slot.sequence, sequence.slot = sequence, slot

    def _release(self, slot: _Slot) -> None:
        """Free `slot` for the oldest backlogged sequence, else for any new one."""
        slot.sequence = None
        if self._backlog:
            self._seat(self._backlog.popleft(), slot)
        else:
            heapq.heappush(self._free, slot)

    # --- forming and running batches ---------------------------------------------------
    def _review_all(self) -> None:
        for lane in self._lanes:
            self._review(lane)

    def _review(self, lane: _Lane) -> None:
        """Send the lane's next batch if its instance is idle and the strategy says so."""
        if self._stopped or lane.running is not None:
            return
        self._cancel_timer(lane)
        now = self._clock.now_ns()
        if self._spec.strategy == "direct":
            chosen, wait_ns = self._direct_batch(lane, now)
        else:
            chosen, wait_ns = self._oldest_batch(lane, now)
        if chosen:
            self._start(lane, chosen, now)
        elif wait_ns is not None:
            lane.timer = asyncio.get_running_loop().call_later(wait_ns / 1e9, self._review, lane)

    def _direct_batch(self, lane: _Lane, now: int) -> tuple[list[_Item | None], int | None]:
        """Slot i of the batch is slot i of the lane (None: a filler), up to the last ready slot."""
        ready = [s for s in lane.slots if s.sequence is not None and s.sequence.queue]
        if not ready:
            return [], None
        delay_ns = self._spec.max_queue_delay_us * 1000
        if delay_ns and self._spec.minimum_slot_utilization > 0:
            age = now - min(s.sequence.queue[0].enqueue_ns for s in ready if s.sequence)
            utilization = len(ready) / self._rules.max_batch_size
            if age <= delay_ns and utilization < self._spec.minimum_slot_utilization:
                return [], delay_ns - age + 1
        wanted = None
        chosen: list[_Item | None] = [None] * (ready[-1].index + 1)
        for slot in ready:
            assert slot.sequence is not None
            item = slot.sequence.queue[0]
            item.signature = self._signature(item)
            if wanted is None:
                wanted = item.signature
            if item.signature == wanted:
                chosen[slot.index] = item
        while chosen and chosen[-1] is None:
            chosen.pop()
        return chosen, None

    def _oldest_batch(self, lane: _Lane, now: int) -> tuple[list[_Item | None], int | None]:
        heads = [
            s.sequence.queue[0]
            for s in lane.slots
            if s.sequence is not None and s.sequence.queue and not s.sequence.in_flight
        ]
        if not heads:
            return [], None
        heads.sort(key=lambda item: item.enqueue_ns)
        for item in heads:
            item.signature = self._signature(item)
        decision = decide(heads, now, self._rules)
        return list(heads[: decision.send_count]), decision.wait_ns

    def _signature(self, item: _Item) -> Any:
        if not self._batching:
            return None
        state = (
            item.sequence.state if not item.start and item.sequence.state else self._inputs.initial_state()
        )
        return (signature(item.request), tuple((k, v.shape) for k, v in state.items()))

    def _start(self, lane: _Lane, chosen: list[_Item | None], now: int) -> None:
        if not self._pool.try_acquire_instance(lane.instance):
            return  # its rate-limiter resources are taken: _review_all runs when they are granted
        prepared = {id(item): self._prepare(item) for item in chosen if item is not None}
        like = next(iter(prepared.values()))
        batch = [(item, self._inputs.filler(like) if item is None else prepared[id(item)]) for item in chosen]
        lane.running = batch
        for item in chosen:
            slot = item.sequence.slot if item is not None and item.end else None
            if item is not None and slot is not None:
                item.sequence.slot = None
                self._release(slot)  # a backlogged sequence may take it: it runs after this batch
        self._pool.run(lane.instance, [r for _, r in batch], partial(self._finished, lane, batch, now))

    def _prepare(self, item: _Item) -> InferRequest:
        """Take `item` off its sequence's queue; its request with controls and state added."""
        sequence = item.sequence
        sequence.queue.popleft()
        sequence.in_flight = True
        self._stats.pending -= 1
        if item.start or sequence.state is None:
            sequence.state = self._inputs.initial_state()
        return self._inputs.for_request(item.request, item.start, item.end, sequence.corrid, sequence.state)

    def _finished(
        self, lane: _Lane, batch: list[tuple[_Item | None, InferRequest]], start: int, execution: Execution
    ) -> None:
        """A batch ended: keep each sequence's new state, send the lane's next batch, then answer."""
        lane.running = None
        end = self._clock.now_ns()
        self._stats.record_execution(len(batch), execution.timing)
        answers: list[tuple[_Item, Any]] = []
        for (item, _), result in zip(batch, execution.results, strict=True):
            if item is None:
                continue
            item.sequence.in_flight = False
            item.sequence.last_seen_ns = end  # idle time counts from its last answer
            if isinstance(result, dict) and item.sequence.state is not None:
                self._inputs.take_state(result, item.sequence.state)
            answers.append((item, result))
        self._review(lane)
        for item, result in answers:
            if isinstance(result, ModelportError):
                self._stats.record_failure(end - item.enqueue_ns, "BACKEND")
            else:
                self._stats.record_success(
                    1, end - item.enqueue_ns, start - item.enqueue_ns, execution.timing
                )
            trace = item.request.trace
            if trace is not None:
                trace.computed(start, end, execution.timing)
            resolve(item.future, result)
        if self._drained is not None and not self._drained.done() and not self._busy():
            self._drained.set_result(None)

    def _cancel_timer(self, lane: _Lane) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None

    # --- idle sequences ------------------------------------------------------------------
    def _arm_reaper(self) -> None:
        if self._reaper is not None or self._stopped or not self._sequences:
            return
        idle_ns = self._spec.max_sequence_idle_us * 1000
        first = min(s.last_seen_ns for s in self._sequences.values())
        wait_ns = max(0, first + idle_ns - self._clock.now_ns())
        self._reaper = asyncio.get_running_loop().call_later(wait_ns / 1e9 + 0.001, self._reap)

    def _reap(self) -> None:
        """End the sequences idle for longer than max_sequence_idle: their slots go to others."""
        self._reaper = None
        now = self._clock.now_ns()
        idle_ns = self._spec.max_sequence_idle_us * 1000
        for corrid, sequence in list(self._sequences.items()):
            idle = now - sequence.last_seen_ns >= idle_ns
            if idle and sequence.slot is not None and not sequence.queue and not sequence.in_flight:
                log.info(
                    "sequence %s of model '%s' ended: idle for over %d us",
                    corrid,
                    self._model,
                    idle_ns // 1000,
                )
                del self._sequences[corrid]
                slot = sequence.slot
                sequence.slot = None
                self._release(slot)
                if slot.sequence is not None:
                    self._review(slot.lane)
        self._arm_reaper()

    # --- stopping ------------------------------------------------------------------------
    def _tracked(self) -> list[_Sequence]:
        seated = [slot.sequence for lane in self._lanes for slot in lane.slots if slot.sequence is not None]
        return seated + list(self._backlog)

    def _busy(self) -> bool:
        return any(lane.running is not None for lane in self._lanes)

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Refuse new requests, fail queued ones, let running batches finish until `deadline`."""
        self._stopped = True
        if self._reaper is not None:
            self._reaper.cancel()
        for lane in self._lanes:
            self._cancel_timer(lane)
        unloading = f"model '{self._model}' is unloading"
        for sequence in self._tracked():
            while sequence.queue:
                item = sequence.queue.popleft()
                self._stats.pending -= 1
                resolve(item.future, ModelUnavailable(with_request_id(item.request.id, unloading)))
        stuck = False
        if self._busy():
            self._drained = asyncio.get_running_loop().create_future()
            if deadline is None:
                await self._drained
            elif not await deadline.wait(self._drained):
                stuck = True
                self._abandon_running()
        await close_pool(self._pool, deadline, self._model, grace=not stuck)

    def _abandon_running(self) -> None:
        message = f"model '{self._model}' was unloaded before the request finished"
        for lane in self._lanes:
            for item, _ in lane.running or []:
                if item is not None:
                    resolve(item.future, ModelUnavailable(with_request_id(item.request.id, message)))
        for name in self._pool.abort_busy():
            log.error(
                "model '%s': instance %s did not return from its execution by the stop deadline; it is "
                "abandoned (its thread runs on until the process exits)",
                self._model,
                name,
            )
