"""ServedModel (one loaded version, ready to take requests) and the handle a request holds on it.

A request acquires a ModelHandle once, when its model and version are resolved; the handle counts
it in flight on that version and on the server until it is released, exactly once. Retiring a
version waits for its count to reach zero; shutdown waits for the server's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from modelport.clock import Deadline
from modelport.config.spec import ModelSpec
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Scheduler


class InflightCounter:
    """Requests in flight; `wait_idle` returns once there are none."""

    __slots__ = ("_idle", "count")

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        if self.count == 1:
            self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, deadline: Deadline) -> int:
        """Wait until nothing is in flight or the deadline passes; the count still in flight."""
        if self.count:
            await deadline.wait(self._idle.wait())
        return self.count


@dataclass(slots=True, eq=False)
class ServedModel:
    """A READY model version: its completed config, scheduler, labels, statistics and requests in flight."""

    spec: ModelSpec
    version: int
    scheduler: Scheduler
    labels: dict[str, list[str]] = field(default_factory=dict)
    stats: ModelStats = field(default_factory=ModelStats)
    inflight: InflightCounter = field(default_factory=InflightCounter)

    @property
    def name(self) -> str:
        return self.spec.name


class ModelHandle:
    """One request's hold on the version that serves it, from acquire to release.

    Use it as a context manager, or call `release` (a second call does nothing).
    """

    __slots__ = ("_counters", "model")

    def __init__(self, model: ServedModel, server: InflightCounter) -> None:
        self.model = model
        self._counters: tuple[InflightCounter, ...] = (model.inflight, server)
        model.inflight.enter()
        server.enter()

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    def release(self) -> None:
        for counter in self._counters:
            counter.leave()
        self._counters = ()

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
