"""DynamicBatcher: one model version's queue, batch forming, and dispatch to idle instances.

Batching follows Triton's dynamic batcher: a batch never exceeds max_batch_size; it is sent as soon
as a preferred size (or max_batch_size) can be formed; otherwise the oldest request waits up to
max_queue_delay before whatever is queued is sent; requests whose shapes differ never share a
batch and are never reordered; a request counts with its full batch size. Without
`dynamic_batching` in the config the same queue serves one request per execution (Triton's
default scheduler). Queue policies bound the queue, and expired requests are answered at their
deadline even while every instance is busy.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Iterator
from functools import partial
from typing import Any

from modelport.backends.base import Execution
from modelport.clock import Clock, Deadline, MonotonicClock
from modelport.config.spec import ModelSpec, QueuePolicySpec
from modelport.errors import ModelportError, ModelUnavailable, with_request_id
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Outputs, resolve
from modelport.scheduling.batch_policy import BatchRules, decide
from modelport.scheduling.instances import InstancePool, close_pool
from modelport.scheduling.queue import PendingRequest, RequestQueue
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)


class DynamicBatcher:
    """Queues requests for one model version and keeps every idle instance fed.

    All decisions run synchronously on the event loop, at the moments the answer can change: a
    request arrives, an instance finishes, a timer (queue delay or deadline) fires, or a caller
    goes away. No task sits between a request and its instance.
    """

    def __init__(
        self, spec: ModelSpec, pool: InstancePool, stats: ModelStats, clock: Clock | None = None
    ) -> None:
        batching = spec.dynamic_batching
        self._model = spec.name
        self._pool = pool
        self._stats = stats
        self._clock = clock or MonotonicClock()
        self._queue = RequestQueue(batching)
        self._batching = batching is not None and spec.max_batch_size > 0
        self._rules = BatchRules(
            max_batch_size=max(spec.max_batch_size, 1),
            preferred_batch_sizes=batching.preferred_batch_sizes if batching else (),
            max_queue_delay_ns=(batching.max_queue_delay_us * 1000) if batching else 0,
        )
        self._max_preferred = self._rules.max_preferred
        self._preserve_ordering = bool(batching and batching.preserve_ordering)
        self._in_order: deque[PendingRequest] = deque()
        self._enforce_shapes = any(
            (-1 in t.dims and not t.allow_ragged_batch) or t.optional or t.is_shape_tensor
            for t in spec.inputs
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at_ns: int | None = None
        self._running: dict[int, list[PendingRequest]] = {}  # batches on instances, by id
        self._timed_running = 0  # requests of running batches whose deadline still applies
        self._drained: asyncio.Future[None] | None = None
        self._grow = False
        self._sequence = 0
        self._stopped = False
        pool.on_available(self._review)  # a rate-limited pool's instance got its resources

    async def submit(self, request: InferRequest) -> Outputs:
        if self._stopped:
            raise ModelUnavailable(with_request_id(request.id, f"model '{self._model}' is unloading"))
        now = self._clock.now_ns()
        level = self._queue.level_for(request)
        policy = self._queue.policy(level)
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._sequence += 1
        deadline_ns, own_timeout = _deadline_ns(policy, request, now)
        item = PendingRequest(
            request=request,
            future=future,
            enqueue_ns=now,
            batch_size=request.batch_size,
            signature=self._signature(request),
            deadline_ns=deadline_ns,
            delay_on_timeout=policy.timeout_action == "DELAY",
            sequence=self._sequence,
            own_timeout=own_timeout,
        )
        if deadline_ns is None and self._goes_at_once(item):
            self._start([item], now, "an instance is idle and nothing waits")
        else:
            self._queue.push(item, level)
            self._stats.pending += 1
            if self._preserve_ordering:
                self._in_order.append(item)
            if self._pool.idle_count > 0 or self._sooner_than_timer(item.deadline_ns):
                self._review()
        try:
            return await future
        except asyncio.CancelledError:
            self._review()  # drop the abandoned request and free its queue slot
            raise

    def reevaluate(self) -> None:
        """Look at the queue again now (after a clock change, e.g. a test's FakeClock)."""
        self._review()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _signature(self, request: InferRequest) -> Any:
        if not self._enforce_shapes:
            return None
        return tuple((i.name, i.shape[1:] if self._batching else i.shape) for i in request.inputs)

    def _goes_at_once(self, item: PendingRequest) -> bool:
        """Whether the batching rules would send this request alone, now: an instance is idle,
        nothing is queued, and alone it is a batch the rules send without waiting."""
        if self._preserve_ordering or self._pool.idle_count == 0 or self._queue:
            return False
        rules = self._rules
        return (
            not self._batching
            or rules.max_queue_delay_ns == 0
            or item.batch_size >= self._max_preferred
            or item.batch_size in rules.preferred_batch_sizes
        )

    def _sooner_than_timer(self, deadline_ns: int | None) -> bool:
        return deadline_ns is not None and (self._timer_at_ns is None or deadline_ns < self._timer_at_ns)

    def _review(self) -> None:
        """Answer expired requests, send every batch that can go, and set the next timer."""
        if self._stopped:
            return
        self._cancel_timer()
        if not self._queue and not self._timed_running:
            return  # nothing waits and nothing running has a deadline: nothing to decide
        now = self._clock.now_ns()
        self._expire(now)
        self._stats.pending -= self._queue.remove_finished()
        wait_ns = self._dispatch(now)
        self._arm_timer(now, wait_ns)

    def _dispatch(self, now: int) -> int | None:
        """Send every batch that can go now; return how long to wait for the next decision."""
        while self._queue and self._pool.idle_count > 0:
            if self._batching:
                decision = decide(self._queue, now, self._rules, grow=self._grow)
                if decision.send_count == 0:
                    return decision.wait_ns
                count, reason = decision.send_count, decision.reason
            else:
                count, reason = 1, "no dynamic batching"
            batch = self._queue.pop_front(count)
            self._stats.pending -= len(batch)
            self._start(batch, now, reason)
        if self._queue:
            self._grow = True
        return None

    def _start(self, batch: list[PendingRequest], now: int, reason: str) -> None:
        """Run `batch` on an idle instance."""
        instance = self._pool.try_acquire()
        assert instance is not None
        self._grow = False
        if log.isEnabledFor(logging.DEBUG):
            rows = sum(p.batch_size for p in batch)
            # In a fresh context: a batch line belongs to no single request (no request id).
            contextvars.Context().run(
                log.debug,
                "model '%s': batch of %d rows (%d requests): %s",
                self._model,
                rows,
                len(batch),
                reason,
            )
        self._running[id(batch)] = batch
        if any(p.own_timeout for p in batch):
            self._timed_running += sum(1 for p in batch if _held_deadline(p) is not None)
        self._pool.run(instance, [p.request for p in batch], partial(self._finished, batch, now))

    def _arm_timer(self, now: int, wait_ns: int | None) -> None:
        deadline = self._queue.next_deadline_ns()
        if self._timed_running:
            running = min(d for p in self._running_items() if (d := _held_deadline(p)) is not None)
            deadline = running if deadline is None else min(deadline, running)
        if deadline is not None:
            wait_ns = max(0, deadline - now) if wait_ns is None else min(wait_ns, max(0, deadline - now))
        if wait_ns is not None:
            self._timer_at_ns = now + wait_ns
            self._timer = asyncio.get_running_loop().call_later(wait_ns / 1e9, self._review)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at_ns = None

    def _expire(self, now: int) -> None:
        for item in self._queue.expire(now):
            self._stats.pending -= 1
            self._reject_expired(item, now)
        if self._timed_running:
            # A request's deadline holds while its batch runs too: it is answered at the deadline
            # and its share of the batch's result is dropped when the batch ends.
            for item in list(self._running_items()):
                held = _held_deadline(item)
                if held is not None and held <= now:
                    item.expired = True
                    self._timed_running -= 1
                    self._reject_expired(item, now)

    def _reject_expired(self, item: PendingRequest, now: int) -> None:
        self._stats.record_failure(now - item.enqueue_ns, "REJECTED")
        self._complete(item, ModelUnavailable(with_request_id(item.request.id, "Request timeout expired")))

    def _running_items(self) -> Iterator[PendingRequest]:
        return (item for batch in self._running.values() for item in batch)

    def _finished(self, batch: list[PendingRequest], start: int, execution: Execution) -> None:
        """A batch ended and its instance is idle: send the next batch first, then answer these.

        The pool delivers exactly one result per request of the batch.
        """
        self._running.pop(id(batch), None)
        if self._timed_running:  # nothing to count when no running request has a deadline of its own
            self._timed_running -= sum(1 for p in batch if _held_deadline(p) is not None)
        self._review()
        results, timing = execution.results, execution.timing
        end = self._clock.now_ns()
        self._stats.record_execution(sum(p.batch_size for p in batch), timing)
        for item, result in zip(batch, results, strict=True):
            if item.expired:
                continue  # answered at its deadline while the batch ran
            if isinstance(result, ModelportError):
                self._stats.record_failure(end - item.enqueue_ns, "BACKEND")
            else:
                self._stats.record_success(
                    item.batch_size, end - item.enqueue_ns, start - item.enqueue_ns, timing
                )
            trace = item.request.trace
            if trace is not None:  # tracing hook: only sampled requests carry a trace
                trace.computed(start, end, timing)
            self._complete(item, result)
        if not self._running and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _complete(self, item: PendingRequest, result: Any) -> None:
        if not self._preserve_ordering:
            resolve(item.future, result)
            return
        item.result, item.done = result, True
        while self._in_order and (self._in_order[0].done or self._in_order[0].future.done()):
            head = self._in_order.popleft()
            resolve(head.future, head.result)

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Refuse new requests, fail queued ones, let running batches finish until `deadline`.

        Requests of batches still running at the deadline are answered UNAVAILABLE at once; their
        instances are left to finish on their own threads (a stuck model cannot hold up a stop).
        """
        self._stopped = True
        self._cancel_timer()
        for item in self._queue.drain():
            self._stats.pending -= 1
            self._complete(
                item,
                ModelUnavailable(with_request_id(item.request.id, f"model '{self._model}' is unloading")),
            )
        stuck = False
        if self._running:
            self._drained = asyncio.get_running_loop().create_future()
            if deadline is None:
                await self._drained
            elif not await deadline.wait(self._drained):
                self._abandon_running()
                stuck = True
                for name in self._pool.abort_busy():
                    log.error(
                        "model '%s': instance %s did not return from its execution by the stop deadline; "
                        "it cannot be stopped and is abandoned (its thread runs on until the process exits)",
                        self._model,
                        name,
                    )
        await close_pool(self._pool, deadline, self._model, grace=not stuck)

    def _abandon_running(self) -> None:
        batches = list(self._running.values())
        log.warning(
            "model '%s': %d batch(es) still running at the stop deadline; their requests are failed",
            self._model,
            len(batches),
        )
        for batch in batches:
            for item in (p for p in batch if not p.expired):
                message = f"model '{self._model}' was unloaded before the request finished"
                self._complete(item, ModelUnavailable(with_request_id(item.request.id, message)))


def _held_deadline(item: PendingRequest) -> int | None:
    """The deadline at which a running request is answered: its own timeout (REJECT policies), unless
    it was answered already."""
    held = item.own_timeout and not (item.expired or item.delay_on_timeout)
    return item.deadline_ns if held else None


def _deadline_ns(policy: QueuePolicySpec, request: InferRequest, now: int) -> tuple[int | None, bool]:
    """The deadline (the policy's default timeout, or the request's `timeout` in µs if allowed) and
    whether it is the request's own (which also holds while its batch runs; the policy's is a
    queue timeout).

    A request timeout is honoured when the policy allows overrides and it is shorter than the
    default timeout, or when the policy has no default timeout at all.
    """
    timeout_us = policy.default_timeout_us
    override = request.parameters.get("timeout")
    if (
        policy.allow_timeout_override
        and isinstance(override, int)
        and not isinstance(override, bool)
        and override > 0
        and (timeout_us == 0 or override < timeout_us)
    ):
        return now + override * 1000, True
    return (now + timeout_us * 1000 if timeout_us else None), False
