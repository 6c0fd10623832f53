"""InstancePool: a model version's instances, each on its own worker thread, handed out when idle.

A batch goes to its instance's thread through a queue; when it ends, one callback on the event
loop turns the instance idle and delivers the results. No task or executor future per batch: the
scheduler can hand the freed instance its next batch in that same callback, before it answers
the finished requests. Whatever the backend, an execution delivered here has exactly one result
per request of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from modelport.backends.base import Execution, ModelInstance
from modelport.clock import Deadline
from modelport.errors import InternalError
from modelport.observability.stats import ExecutionTiming
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

# Closing idle instances is quick; even past the stop deadline it gets this long before it is left.
_CLOSE_GRACE_S = 0.5

# Handing a batch to a thread and back costs tens of microseconds of CPU and a wake-up of each
# side. An instance whose executions are typically shorter runs them on the event loop instead
# (see _InlineChoice).
INLINE_ENTER_NS = 50_000
INLINE_LEAVE_NS = 150_000
INLINE_BLOCKED_NS = 2_000_000
_SAMPLES_BEFORE_INLINE = 32
_MAX_BLOCKED = 3
_AVERAGE_WEIGHT = 0.125

OnDone = Callable[[Execution], None]


class InstancePool:
    """Idle instances wait in FIFO order; a batch runs on its instance's own thread.

    A scheduler takes an instance (`try_acquire`, `try_acquire_instance`, or `acquire` to wait),
    then `run`s or `execute`s one batch on it; the instance is idle again when that ends. An
    instance is available only when it is idle and, in a rate-limited pool (RateLimitedPool), can
    take its rate-limiter resources now; `idle_count` counts those. Resources can also come free
    when another model's execution ends: a scheduler that waits for an instance without awaiting
    `acquire` registers `on_available(callback)` and looks at its queue again when it is called.
    """

    def __init__(self, model: str, instances: Sequence[ModelInstance], thread_name: str) -> None:
        self._instances = list(instances)
        self._workers = {
            id(inst): _Worker(model, inst, f"{thread_name}-{i}") for i, inst in enumerate(self._instances)
        }
        self._idle: deque[ModelInstance] = deque(self._instances)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_available: list[Callable[[], None]] = []

    def on_available(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) when an instance may have become available for a reason
        other than the end of an execution the scheduler started: a rate-limiter grant. Never called
        in a pool that is not rate-limited."""
        self._on_available.append(callback)

    @property
    def size(self) -> int:
        return len(self._instances)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def instances(self) -> tuple[ModelInstance, ...]:
        return tuple(self._instances)

    def try_acquire(self) -> ModelInstance | None:
        """An idle instance, or None at once when all are busy."""
        return self._idle.popleft() if self._idle else None

    def try_acquire_instance(self, instance: ModelInstance) -> bool:
        """Take this particular instance if it is idle (for schedulers that pin work to an instance)."""
        try:
            self._idle.remove(instance)
        except ValueError:
            return False
        return True

    async def acquire(self) -> ModelInstance:
        """Wait for an instance that `try_acquire` gives."""
        while (instance := self.try_acquire()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        return instance

    def run(self, instance: ModelInstance, requests: Sequence[InferRequest], on_done: OnDone) -> None:
        """Start a batch on an acquired `instance`'s thread.

        When the execution ends, on the calling event loop, the instance turns idle and then
        `on_done(execution)` runs. A backend exception, or a result count that is not one per
        request, becomes an INTERNAL error for each request.
        """
        loop = asyncio.get_running_loop()

        def finished(execution: Execution) -> None:
            self._release(instance)
            on_done(execution)

        self._workers[id(instance)].submit(requests, loop, finished)

    async def execute(self, instance: ModelInstance, requests: Sequence[InferRequest]) -> Execution:
        """Run one batch on an acquired `instance` and wait for its results and timing.

        The instance turns idle when the execution really ends, even if the caller is cancelled
        first, so an instance never runs two batches at once.
        """
        future: asyncio.Future[Execution] = asyncio.get_running_loop().create_future()

        def deliver(execution: Execution) -> None:
            if not future.done():
                future.set_result(execution)

        self.run(instance, requests, deliver)
        return await future

    def close(self) -> None:
        """Close every instance and stop its thread (waits for a running batch to finish)."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
        self._instances.clear()
        self._idle.clear()

    def abort_busy(self) -> list[str]:
        """Ask every instance that is running a batch to end it now; the names of those that cannot."""
        idle = {id(instance) for instance in self._idle}
        return [
            worker.name
            for key, worker in self._workers.items()
            if key not in idle and not worker.instance.abort()
        ]

    def _release(self, instance: ModelInstance) -> None:
        self._idle.append(instance)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


class _Worker:
    """Runs one instance's batches, one at a time, in the order submitted: on its own thread, or
    inline on the event loop while the instance's measured executions are tiny and its backend
    allows it (`may_run_inline`)."""

    def __init__(self, model: str, instance: ModelInstance, name: str) -> None:
        self._model = model
        self.instance = instance
        self.name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._choice = _InlineChoice() if getattr(instance, "may_run_inline", False) else None

    @property
    def inline(self) -> bool:
        return self._choice is not None and self._choice.inline

    def submit(self, requests: Sequence[InferRequest], loop: asyncio.AbstractEventLoop, done: OnDone) -> None:
        if self.inline:
            # The callback still runs later, as from the thread: the caller's own step ends first.
            loop.call_soon(done, self._execute(requests))
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put((requests, loop, done))

    def close(self) -> None:
        """Close the instance on its own thread after the batches already submitted."""
        if self._thread is None:
            self.instance.close()
            return
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self.instance.close()
                return
            requests, loop, done = job
            execution = self._execute(requests)
            with contextlib.suppress(RuntimeError):  # the loop closed while it ran: nobody waits
                loop.call_soon_threadsafe(done, execution)
            # An idle thread must not keep its last batch (request bodies, outputs) alive.
            del job, requests, execution, done

    def _execute(self, requests: Sequence[InferRequest]) -> Execution:
        if self._choice is None:
            return _checked_execute(self._model, self.instance, requests, self.name)
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        execution = _checked_execute(self._model, self.instance, requests, self.name)
        self._choice.observe(time.thread_time_ns() - cpu, time.perf_counter_ns() - wall)
        return execution


class _InlineChoice:
    """Whether an instance's next batch runs inline on the event loop, from its measured executions.

    On its thread, an execution's wall time counts waits for the GIL under load, so the choice
    looks at CPU time (a moving average) and at the shortest wall time seen (a model that sleeps
    or waits on I/O never has a short one). Inline, wall time is what the loop loses: the instance
    goes back to its thread when the average grows, at once when one execution blocks the loop
    for milliseconds, and for good after that happened a few times.
    """

    def __init__(self) -> None:
        self.inline = False
        self._samples = 0
        self._average_ns = 0.0
        self._shortest_wall_ns = 0
        self._blocked = 0

    def observe(self, cpu_ns: int, wall_ns: int) -> None:
        if self.inline:
            self._average_ns += (wall_ns - self._average_ns) * _AVERAGE_WEIGHT
            if wall_ns > INLINE_BLOCKED_NS:
                self._blocked += 1
                self._leave()
            elif self._average_ns > INLINE_LEAVE_NS:
                self._leave()
            return
        self._samples += 1
        if self._samples == 1:
            self._average_ns, self._shortest_wall_ns = float(cpu_ns), wall_ns
        else:
            self._average_ns += (cpu_ns - self._average_ns) * _AVERAGE_WEIGHT
            self._shortest_wall_ns = min(self._shortest_wall_ns, wall_ns)
        self.inline = (
            self._samples >= _SAMPLES_BEFORE_INLINE
            and self._blocked < _MAX_BLOCKED
            and self._average_ns < INLINE_ENTER_NS
            and self._shortest_wall_ns < INLINE_LEAVE_NS
        )

    def _leave(self) -> None:
        self.inline = False
        self._samples = 0


def _checked_execute(
    model: str, instance: ModelInstance, requests: Sequence[InferRequest], name: str
) -> Execution:
    """Execute a batch; the one place that holds every backend to one result per request.

    A backend that raises, or answers a batch with more or fewer results than it has requests,
    fails every request of the batch with INTERNAL (a short answer would leave callers waiting).
    """
    try:
        execution = instance.execute(requests)
    except Exception as exc:  # a backend that raised instead of returning per-request errors
        log.exception("instance %s: execution failed", name)
        return Execution([InternalError(f"execution failed: {exc}")] * len(requests), ExecutionTiming())
    if len(execution.results) != len(requests):
        message = (
            f"model '{model}': the backend returned {len(execution.results)} results for a batch of "
            f"{len(requests)} requests"
        )
        log.error("instance %s: %s", name, message)
        return Execution([InternalError(message)] * len(requests), execution.timing)
    return execution


async def close_pool(
    pool: InstancePool, deadline: Deadline | None, model: str, *, grace: bool = True
) -> None:
    """Close `pool`'s instances; with a deadline, wait no longer than it allows (plus, with `grace`,
    a short grace to close idle instances even when the deadline has passed).

    The closing runs on a daemon thread of its own, so an instance stuck in a model can neither
    block the event loop nor, at exit, the interpreter.
    """
    if deadline is None:
        await asyncio.to_thread(pool.close)
        return
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def close() -> None:
        try:
            pool.close()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_set_done, closed)

    threading.Thread(target=close, name=f"{model}-close", daemon=True).start()
    wait_s = max(deadline.remaining(), _CLOSE_GRACE_S if grace and not deadline.cut.is_set() else 0.0)
    if wait_s > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), wait_s)
    if not closed.done():
        log.warning("model '%s': an instance is still busy after the stop deadline; leaving it", model)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
