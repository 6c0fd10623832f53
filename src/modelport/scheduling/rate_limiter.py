"""RateLimiter: the rate-limiter resources of the whole server, shared by the instances of every model
(Triton's `--rate-limit=execution_count`).

An instance whose config lists resources may start an execution only when it can take every one of
them, in the count it lists, on its device (or server-wide, for a global resource); it holds them
until the execution ends. The server has, of each resource, the count given by
`--rate-limit-resource`, or else the most any registered instance lists.

Order: instances waiting for resources are served by a virtual time. Each execution moves an
instance's time on by its priority (0 counts as 1), so of two instances that keep competing, one
of priority 1 runs twice as often as one of priority 2 (Triton picks by execution count times
priority). An instance that starts waiting joins at the current time, not at its own past one, and
equal times go first come, first served. An instance that cannot have its resources yet keeps them
from every instance behind it: those may go first only with resources it does not need. So no
instance waits forever while executions end.

Thread-safe (pools are closed on threads of their own); a ticket's `notify` runs outside the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count

from modelport.config.rate_limiter import RateLimiterSpec
from modelport.config.settings import RateLimitResource
from modelport.errors import InvalidInput

log = logging.getLogger(__name__)

GLOBAL = -2  # the device key of global resources (Triton's GLOBAL_RESOURCE_KEY)
EVERY_DEVICE = -1  # a --rate-limit-resource without a device
Key = tuple[int, str]  # (device, or GLOBAL; resource name)

IDLE, WAITING, GRANTED, RUNNING, GONE = "idle", "waiting", "granted", "running", "gone"


@dataclass(frozen=True, slots=True)
class InstanceDemand:
    """What one instance asks of the limiter: its device (0 for CPU instances, as in Triton) and its
    group's `rate_limiter` block (None: no resources, priority 1)."""

    device: int
    config: RateLimiterSpec | None


class Ticket:
    """One registered instance's place in the limiter: what it needs and where it stands."""

    __slots__ = ("model", "needs", "notify", "seq", "state", "stride", "vtime")

    def __init__(self, model: str, needs: dict[Key, int], priority: int) -> None:
        self.model = model
        self.needs = needs
        self.stride = max(priority, 1)
        self.state = IDLE
        self.vtime = 0
        self.seq = 0
        # Called, from whichever thread gave resources back, when this ticket is granted while its
        # pool was not asking (another execution ended): the pool wakes its scheduler.
        self.notify: Callable[[Ticket], None] = _nothing

    @property
    def granted(self) -> bool:
        return self.state == GRANTED

    def __repr__(self) -> str:
        return f"Ticket({self.model!r}, {self.needs}, {self.state}, vtime={self.vtime})"


class RateLimiter:
    """Hands the server's resources to waiting instances, fairly and by priority (module docstring)."""

    def __init__(self, resources: Sequence[RateLimitResource] = ()) -> None:
        self._explicit = tuple(resources)
        self._lock = threading.Lock()
        self._tickets: list[Ticket] = []
        self._capacity: dict[Key, int] = {}
        self._used: dict[Key, int] = {}
        self._waiting: list[Ticket] = []
        self._vtime = 0
        self._seq = count(1)

    def register(self, model: str, demands: Sequence[InstanceDemand]) -> list[Ticket]:
        """Tickets for a model version's instances, in order; InvalidInput (Triton's messages) when the
        server's resources could never run one of them, and then nothing is registered."""
        tickets = [Ticket(model, _needs(d), d.config.priority if d.config else 0) for d in demands]
        with self._lock:
            capacity = self._capacities(self._tickets + tickets)
            self._tickets.extend(tickets)
            self._capacity = capacity
            granted = self._allocate()
        log.debug("rate limiter resources: %s", _describe(capacity))
        _notify(granted)
        return tickets

    def unregister(self, tickets: Iterable[Ticket]) -> None:
        """Remove an unloading version's tickets; what they held or were granted is given back."""
        with self._lock:
            for ticket in tickets:
                if ticket.state == GONE:
                    continue
                if ticket.state == WAITING:
                    self._waiting.remove(ticket)
                elif ticket.state in (GRANTED, RUNNING):
                    self._give_back(ticket)
                ticket.state = GONE
                self._tickets.remove(ticket)
            self._capacity = self._capacities(self._tickets)
            granted = self._allocate()
        _notify(granted)

    def request(self, tickets: Iterable[Ticket]) -> list[Ticket]:
        """Put these idle tickets in line; those of them granted at once (not notified; the caller
        must start or withdraw each). Tickets not idle are left as they are."""
        asked = []
        with self._lock:
            for ticket in tickets:
                if ticket.state == IDLE:
                    self._enqueue(ticket)
                    asked.append(ticket)
            granted = self._allocate() if asked else []
        now = [t for t in granted if t in asked]
        _notify([t for t in granted if t not in asked])
        return now

    def start(self, ticket: Ticket) -> None:
        """A granted ticket's execution starts: its virtual time moves on by its priority."""
        with self._lock:
            if ticket.state == GRANTED:
                ticket.state = RUNNING
                self._vtime = max(self._vtime, ticket.vtime)
                ticket.vtime += ticket.stride

    def finish(self, ticket: Ticket, *, settle: bool = True) -> None:
        """A running ticket's execution ended: give back what it held, to whoever is first in line.

        With `settle=False` nothing is handed on yet: the caller first lets the ticket's scheduler
        ask again if it has more to run, so the ticket competes with the waiting ones by priority
        (as Triton stages an instance with pending requests again), then calls `settle()`.
        """
        with self._lock:
            if ticket.state != RUNNING:
                return  # unregistered meanwhile (a model unloaded while its instance ran)
            self._give_back(ticket)
            ticket.state = IDLE
            granted = self._allocate() if settle else []
        _notify(granted)

    def settle(self) -> None:
        """Grant whatever can be granted now (after `finish(..., settle=False)`)."""
        with self._lock:
            granted = self._allocate()
        _notify(granted)

    def withdraw(self, tickets: Iterable[Ticket]) -> None:
        """These tickets leave the line, and granted ones give back unused (their scheduler has
        nothing to run now); they are idle until asked again."""
        with self._lock:
            for ticket in tickets:
                if ticket.state == WAITING:
                    self._waiting.remove(ticket)
                elif ticket.state == GRANTED:
                    self._give_back(ticket)
                else:
                    continue
                ticket.state = IDLE
            granted = self._allocate()
        _notify(granted)

    def capacity(self) -> dict[Key, int]:
        """The server's count of each resource, by (device or GLOBAL, name)."""
        with self._lock:
            return dict(self._capacity)

    def _enqueue(self, ticket: Ticket) -> None:
        """Into the line, at the current virtual time or its own if later, after equal ones."""
        ticket.state = WAITING
        ticket.vtime = max(ticket.vtime, self._vtime)
        ticket.seq = next(self._seq)
        self._waiting.append(ticket)

    def _allocate(self) -> list[Ticket]:
        """Grant waiting tickets in order; one that cannot go keeps its resources from those behind."""
        granted: list[Ticket] = []
        blocked: set[Key] = set()
        still: list[Ticket] = []
        self._waiting.sort(key=lambda t: (t.vtime, t.seq))
        for ticket in self._waiting:
            if not blocked.isdisjoint(ticket.needs) or not self._fits(ticket):
                blocked.update(ticket.needs)
                still.append(ticket)
                continue
            for key, n in ticket.needs.items():
                self._used[key] = self._used.get(key, 0) + n
            ticket.state = GRANTED
            granted.append(ticket)
        self._waiting = still
        return granted

    def _fits(self, ticket: Ticket) -> bool:
        used, capacity = self._used, self._capacity
        return all(used.get(key, 0) + n <= capacity.get(key, 0) for key, n in ticket.needs.items())

    def _give_back(self, ticket: Ticket) -> None:
        for key, n in ticket.needs.items():
            self._used[key] -= n

    def _capacities(self, tickets: Iterable[Ticket]) -> dict[Key, int]:
        """Each resource's count: the most any ticket needs, or the flags' count when flags are given;
        InvalidInput as Triton when flags leave too few, or a name is both global and per device."""
        most: dict[Key, int] = {}
        for ticket in tickets:
            for key, n in ticket.needs.items():
                most[key] = max(most.get(key, 0), n)
        capacity = dict(most)
        if self._explicit:
            for key in sorted(most):
                capacity[key] = self._explicit_count(key)
                if capacity[key] < most[key]:
                    raise InvalidInput(
                        f'Resource count for "{key[1]}" is limited to {capacity[key]} which will prevent '
                        "scheduling of one or more model instances, the minimum required count is "
                        f"{most[key]}"
                    )
        global_names = {name for device, name in most if device == GLOBAL}
        for device, name in sorted(most):
            if device != GLOBAL and name in global_names:
                raise InvalidInput(
                    f'Resource "{name}" is present as both global and device-specific resource in the '
                    "model configuration."
                )
        return capacity

    def _explicit_count(self, key: Key) -> int:
        """A global resource: the largest count given for its name on any device; a device's: the
        largest given for that device or for every device; 0 when not given."""
        device, name = key
        return max(
            (
                r.count
                for r in self._explicit
                if r.name == name and (device == GLOBAL or r.device in (device, EVERY_DEVICE))
            ),
            default=0,
        )


def _needs(demand: InstanceDemand) -> dict[Key, int]:
    if demand.config is None:
        return {}
    return {(GLOBAL if r.is_global else demand.device, r.name): r.count for r in demand.config.resources}


def _notify(tickets: list[Ticket]) -> None:
    for ticket in tickets:
        ticket.notify(ticket)


def _nothing(ticket: Ticket) -> None:
    pass


def _describe(capacity: dict[Key, int]) -> str:
    parts = [
        f"{'GLOBAL' if device == GLOBAL else f'device {device}'} {name}={n}"
        for (device, name), n in sorted(capacity.items())
    ]
    return ", ".join(parts) or "none"
