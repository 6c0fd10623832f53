"""Residency: the models holding memory, their least-recently-used order, and `--model-memory-budget`.

Every load is admitted here first. A model's resident size is the size of its folder on disk
(model files, config, labels), measured when it is admitted: a predictable estimate that is known
before the load, so the budget is checked before memory is taken rather than after. With
`--model-memory-accounting=process` (a ProcessMemory) a model counts as its folder size times its
backend's learned factor, and the budget bounds the process's resident memory instead of the sum
of those counts (see repository.process_memory). With a budget,
admission unloads the least recently used idle models until the new one fits; a model with
requests in flight or queued, one a request is waiting to load, one still loading, and one whose
config sets the parameter `modelport.pin` to "true" are never chosen. The sum of resident sizes
(loaded and loading models) never exceeds the budget. Loads, evictions and load durations are
counted here for the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from modelport.errors import ModelUnavailable
from modelport.repository.lifecycle import UNLOADED, IndexEntry, ModelState
from modelport.repository.process_memory import ProcessMemory
from modelport.repository.records import ModelTable

log = logging.getLogger(__name__)

EVICTED = "evicted (memory budget)"  # the index's reason for a model unloaded to make room
PIN_PARAMETER = "modelport.pin"
# Upper bounds (seconds) of the load-duration histogram's buckets.
LOAD_SECONDS_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Unload = Callable[[str], Awaitable[None]]


def folder_bytes(path: Path) -> int:
    """The size of every file under `path` (links are not followed): a model's resident estimate."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while walking: it will not be loaded either
                continue
    return total


class Residency:
    """Admits loads under the budget (None: no budget, sizes still counted) and picks what to evict."""

    def __init__(self, models: ModelTable, budget: int | None, memory: ProcessMemory | None = None) -> None:
        self.budget = budget
        self.memory = memory  # None: models count as their folder sizes against the budget
        self._models = models
        self.bytes: dict[str, int] = {}  # admitted models (loading or loaded) -> resident estimate
        self._recent: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._loading: set[str] = set()
        self._unloading: set[str] = set()  # evicted now: counted until its unload is over
        self._holds: dict[str, int] = {}  # requests waiting for a model's load to finish
        self._evicted: set[str] = set()
        self._room: asyncio.Lock | None = None  # admissions that must evict take turns
        self.loads: dict[str, int] = {}
        self.evictions: dict[str, int] = {}
        self.load_seconds = [0] * (len(LOAD_SECONDS_BOUNDS) + 1)
        self.load_seconds_sum = 0.0

    @property
    def baseline(self) -> int | None:
        """Process accounting: the resident memory the budget is counted from."""
        return None if self.memory is None else self.memory.baseline

    @property
    def factors(self) -> dict[str, float]:
        """Process accounting: bytes of RSS per byte of model files, learned per backend."""
        return {} if self.memory is None else dict(self.memory.factors)

    # --- requests ----------------------------------------------------------------------------
    def touch(self, name: str) -> None:
        """A request uses `name`: it becomes the most recently used."""
        recent = self._recent
        try:
            recent.move_to_end(name)
        except KeyError:
            if name in self.bytes:
                recent[name] = None

    def hold(self, name: str) -> None:
        """A request waits for `name` to load: it is not evicted until `release_hold`."""
        self._holds[name] = self._holds.get(name, 0) + 1

    def release_hold(self, name: str) -> None:
        left = self._holds[name] - 1
        if left:
            self._holds[name] = left
        else:
            del self._holds[name]

    # --- loads -------------------------------------------------------------------------------
    async def admit(self, name: str, size: int, unload: Unload, backend: str = "") -> bool:
        """Make room for `name` (`size` bytes of files, run by `backend`) by unloading LRU idle models
        with `unload`.

        False when `name` is admitted already (a reload: its size is not counted twice). Raises
        ModelUnavailable naming the budget when evicting every evictable model would not make room.
        """
        if name in self.bytes and name not in self._unloading:
            return False
        counted = size if self.memory is None else self.memory.estimate(backend, size)
        # A model loading again while it is evicted waits until its eviction is counted.
        if self.budget is not None and (name in self._unloading or not self._fits(counted, self.budget)):
            if self._room is None:
                self._room = asyncio.Lock()
            async with self._room:
                await self._make_room(name, counted, self.budget, unload)
        self.bytes[name] = counted
        if self.memory is not None:
            self.memory.started(name, backend, size, counted)
        self._loading.add(name)
        self._evicted.discard(name)
        self._recent[name] = None
        self._recent.move_to_end(name)
        return True

    def _fits(self, size: int, budget: int) -> bool:
        if self.memory is not None:
            return self.memory.fits(size, budget)
        return size <= budget - sum(self.bytes.values())

    async def _make_room(self, name: str, size: int, budget: int, unload: Unload) -> None:
        while not self._fits(size, budget):
            victim = self._victim(name)
            if victim is None:
                raise ModelUnavailable(self._no_room_message(name, size, budget))
            log.info("unloading '%s' (least recently used) to make room for '%s' in the memory budget",
                     victim, name)  # fmt: skip
            self._unloading.add(victim)  # no other admission picks it while it unloads
            try:
                await unload(victim)
            finally:
                self._unloading.discard(victim)
            if self.memory is not None:
                self.memory.unloaded()
            if self.bytes.pop(victim, None) is not None:
                self._evicted.add(victim)
                self.evictions[victim] = self.evictions.get(victim, 0) + 1
            self._recent.pop(victim, None)

    def _victim(self, wanted: str) -> str | None:
        """The least recently used model that may be unloaded now."""
        for name in self._recent:
            if name != wanted and name in self.bytes and self._evictable(name):
                return name
        return None

    def _evictable(self, name: str) -> bool:
        if name in self._loading or name in self._unloading or name in self._holds:
            return False
        record = self._models.get(name)
        if record is None:
            return True
        serving = record.serving().values()
        if any(s.spec.parameters.get(PIN_PARAMETER, "").lower() == "true" for s in serving):
            return False
        unloading = any(e.state is ModelState.UNLOADING for e in record.versions.values())
        return not unloading and all(s.inflight.count == 0 for s in serving)

    def _no_room_message(self, name: str, size: int, budget: int) -> str:
        if self.memory is not None:
            held = self.memory.used() + self.memory.loading()
            return (
                f"model '{name}' needs an estimated {size} bytes but the memory budget of {budget} bytes "
                f"(--model-memory-budget, --model-memory-accounting=process) has "
                f"{max(budget - held, 0)} free and no idle, unpinned model to unload ({held} bytes of "
                f"process memory above its baseline held by models in use, loading or pinned)"
            )
        held = sum(self.bytes.values())
        return (
            f"model '{name}' needs {size} bytes but the memory budget of {budget} bytes "
            f"(--model-memory-budget) has {max(budget - held, 0)} free and no idle, unpinned model "
            f"to unload ({held} bytes held by models in use, loading or pinned)"
        )

    def loaded(self, name: str, seconds: float, ok: bool) -> None:
        """The load admitted for `name` finished; a failed one releases its room unless a version serves."""
        self._loading.discard(name)
        if self.memory is not None:
            self.memory.finished(name, ok)
        if ok:
            self.loads[name] = self.loads.get(name, 0) + 1
            index = next((i for i, b in enumerate(LOAD_SECONDS_BOUNDS) if seconds <= b), -1)
            self.load_seconds[index] += 1
            self.load_seconds_sum += seconds
            return
        record = self._models.get(name)
        if record is None or not record.serving():
            self.release(name)

    def release(self, name: str) -> None:
        """`name` was unloaded (or never loaded): its bytes no longer count."""
        if name not in self._loading and name not in self._unloading:
            self.bytes.pop(name, None)
            self._recent.pop(name, None)
            if self.memory is not None:
                self.memory.forget(name)
                self.memory.unloaded()

    def evicted(self, name: str) -> bool:
        """Whether `name` was last unloaded to make room (the repository index says so)."""
        return name in self._evicted

    def annotate(self, rows: list[IndexEntry]) -> list[IndexEntry]:
        """Index rows with the reason of versions unloaded to make room: evicted, not merely unloaded."""
        if not self._evicted:
            return rows
        return [
            replace(row, reason=EVICTED) if row.reason == UNLOADED and row.name in self._evicted else row
            for row in rows
        ]
