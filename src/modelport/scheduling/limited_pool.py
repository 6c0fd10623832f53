"""RateLimitedPool: an InstancePool whose instances execute only while holding their rate-limiter
resources, and how a model version's instances are registered with the server's RateLimiter.

A pool is rate-limited only when the limiter is on and an instance of the model lists resources;
every other model gets a plain InstancePool, so the rate limiter costs it nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from modelport.backends.base import Execution, InstancePlacement, ModelInstance
from modelport.config.spec import ModelSpec
from modelport.scheduling.instances import InstancePool, OnDone
from modelport.scheduling.rate_limiter import IDLE, InstanceDemand, RateLimiter, Ticket
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)


def register_instances(
    limiter: RateLimiter | None, spec: ModelSpec, placements: Sequence[InstancePlacement]
) -> list[Ticket] | None:
    """The limiter's tickets for these instances (None: the pool needs no rate limiting);
    InvalidInput when the server's resources could never run one of them.

    With the limiter off, a config's `rate_limiter` blocks are ignored, as in Triton, with one log line.
    """
    configs = [p.group.rate_limiter for p in placements]
    if limiter is None:
        if any(c is not None for c in configs):
            log.info(
                "model '%s': instance_group rate_limiter is ignored: the rate limiter is off "
                "(--rate-limit=execution_count turns it on)",
                spec.name,
            )
        return None
    if not any(c is not None and c.resources for c in configs):
        return None  # nothing to share: priorities only order instances that compete for resources
    demands = [InstanceDemand(p.device_id or 0, p.group.rate_limiter) for p in placements]
    return limiter.register(spec.name, demands)


def make_pool(
    model: str,
    instances: Sequence[ModelInstance],
    thread_name: str,
    limiter: RateLimiter | None,
    tickets: Sequence[Ticket] | None,
) -> InstancePool:
    if limiter is None or tickets is None:
        return InstancePool(model, instances, thread_name)
    return RateLimitedPool(model, instances, thread_name, limiter, tickets)


class RateLimitedPool(InstancePool):
    """An instance is available when it is idle and the limiter grants it its resources.

    Asking (`idle_count`, `try_acquire*`, `acquire`) puts the idle instances in the limiter's line;
    one granted then is the scheduler's to take. One granted later (another execution gave resources
    back) wakes the scheduler through `on_available` and `acquire`'s waiters. A grant the scheduler
    does not take by the next turn of the event loop goes back to the limiter, so resources are never
    held by an instance that has nothing to run. When an execution ends, what it held is handed on
    only after the scheduler's `on_done` had the chance to ask for the instance again, so a busy
    model competes by priority with the waiting ones instead of always going last.
    """

    def __init__(
        self,
        model: str,
        instances: Sequence[ModelInstance],
        thread_name: str,
        limiter: RateLimiter,
        tickets: Sequence[Ticket],
    ) -> None:
        super().__init__(model, instances, thread_name)
        self._limiter = limiter
        self._tickets = {id(inst): ticket for inst, ticket in zip(instances, tickets, strict=True)}
        for ticket in tickets:
            ticket.notify = self._granted_later
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_due = False
        self._return_due = False
        self._named: set[Ticket] = set()  # asked for by name (try_acquire_instance) and not yet taken

    @property
    def idle_count(self) -> int:
        self._ask(self._idle)
        return sum(1 for inst in self._idle if self._tickets[id(inst)].granted)

    def try_acquire(self) -> ModelInstance | None:
        self._ask(self._idle)
        for instance in self._idle:
            if self._tickets[id(instance)].granted:
                self._take(instance)
                return instance
        return None

    def try_acquire_instance(self, instance: ModelInstance) -> bool:
        if instance not in self._idle:
            return False
        self._named.add(self._tickets[id(instance)])
        self._ask((instance,))
        if not self._tickets[id(instance)].granted:
            return False
        self._take(instance)
        return True

    def close(self) -> None:
        """Leave the limiter (what the instances hold goes back, even from one stuck past a stop
        deadline), then close the instances."""
        self._limiter.unregister(self._tickets.values())
        super().close()

    def _take(self, instance: ModelInstance) -> None:
        self._idle.remove(instance)
        ticket = self._tickets[id(instance)]
        self._named.discard(ticket)
        self._limiter.start(ticket)

    def _ask(self, instances: Iterable[ModelInstance]) -> None:
        """Put the idle instances that are not yet in the limiter's line in it."""
        idle = [t for inst in instances if (t := self._tickets[id(inst)]).state == IDLE]
        if not idle:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._limiter.request(idle):
            self._schedule_return()

    def run(self, instance: ModelInstance, requests: Sequence[InferRequest], on_done: OnDone) -> None:
        def done(execution: Execution) -> None:
            try:
                on_done(execution)  # the scheduler may ask for the instance again, in line with others
            finally:
                self._limiter.settle()  # what it gave back and did not ask for again goes on

        super().run(instance, requests, done)

    def _release(self, instance: ModelInstance) -> None:
        self._limiter.finish(self._tickets[id(instance)], settle=False)
        super()._release(instance)

    def _granted_later(self, ticket: Ticket) -> None:
        """The limiter granted a waiting instance (on whichever thread gave resources back)."""
        if self._wake_due or self._loop is None:
            return
        self._wake_due = True
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wake_due = False  # first: a grant from now on schedules another wake
        try:
            for callback in self._on_available:
                callback()
        finally:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
            self._schedule_return()  # after the woken acquire() calls have taken theirs

    def _schedule_return(self) -> None:
        if not self._return_due:
            self._return_due = True
            asyncio.get_running_loop().call_soon(self._return_unused)

    def _return_unused(self) -> None:
        """A grant still untaken means the scheduler has nothing to run now: give it back, and take
        out of line the instances it did not ask for by name since (it asks again at its next
        decision: an arrival, a timer, an execution's end), so that a scheduler waiting to fill a
        batch does not take turns with itself."""
        self._return_due = False
        if self._wake_due:
            return  # the scheduler has not been told of a grant yet: the wake returns what it leaves
        tickets = [self._tickets[id(instance)] for instance in list(self._idle)]
        if any(t.granted for t in tickets):
            self._limiter.withdraw(t for t in tickets if t.granted or t not in self._named)
            self._named.clear()
