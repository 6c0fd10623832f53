"""`--model-memory-accounting=process`: the memory budget bounds the process's resident memory.

Counting folder sizes bounds what is counted, not the process: a backend holds far more than its
model file (copies per instance, arenas, activations). In this mode a load is admitted when the
resident memory (RSS, from /proc/self/statm) above a baseline taken before the first load, plus
the memory of the models still loading, plus an estimate for the new model stays within the
budget. The estimate is the model's folder size times a factor per backend learned in this
process: the largest ratio seen so far of the RSS a model's load added, or its unload gave back,
to its folder size (1 until a model of that backend has loaded). Learning the largest ratio keeps
the estimate on the safe side; the RSS check itself corrects whatever the estimate misses once the
model is resident.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATM = Path("/proc/self/statm")
FILES, PROCESS = "files", "process"  # the --model-memory-accounting modes


def resident_bytes() -> int:
    """This process's resident memory in bytes (OSError where /proc/self/statm cannot be read)."""
    fields = STATM.read_text(encoding="ascii").split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def readable() -> bool:
    """Whether this platform tells a process its resident memory (Linux's /proc/self/statm)."""
    try:
        resident_bytes()
    except (OSError, ValueError, IndexError):
        return False
    return True


def learned_factor(current: float, folder: int, change: int) -> float:
    """The factor after one observation: `change` bytes of RSS for a model of `folder` bytes."""
    if folder <= 0 or change <= 0:
        return current
    return max(current, change / folder)


def estimate(folder: int, factor: float) -> int:
    """The bytes a model of `folder` bytes is expected to add to the process."""
    return math.ceil(folder * factor)


def fits(used: int, loading: int, wanted: int, budget: int) -> bool:
    """Whether RSS above the baseline (`used`), loads under way and the new model fit the budget."""
    return used + loading + wanted <= budget


@dataclass(frozen=True, slots=True)
class _Pending:
    """A model being loaded: what it was estimated at and the RSS when its load began."""

    backend: str
    folder: int
    rss_before: int
    estimate: int


class ProcessMemory:
    """The baseline, the learned factors and the loads under way, for the process accounting mode."""

    def __init__(self, read: Callable[[], int] = resident_bytes) -> None:
        self._read = read
        self.baseline: int | None = None
        self.factors: dict[str, float] = {}  # backend -> learned factor
        self._models: dict[str, tuple[str, int]] = {}  # admitted model -> (backend, folder bytes)
        self._pending: dict[str, _Pending] = {}

    def take_baseline(self) -> None:
        """The RSS the budget is counted from: the server before its first model."""
        if self.baseline is None:
            self.baseline = self._read()

    def used(self) -> int:
        """RSS above the baseline now."""
        now = self._read()
        if self.baseline is None:
            self.baseline = now
        return max(now - self.baseline, 0)

    def loading(self) -> int:
        """The estimates of the models admitted but not loaded yet (their RSS is still to come)."""
        return sum(p.estimate for p in self._pending.values())

    def estimate(self, backend: str, folder: int) -> int:
        return estimate(folder, self.factors.get(backend, 1.0))

    def fits(self, wanted: int, budget: int) -> bool:
        return fits(self.used(), self.loading(), wanted, budget)

    def started(self, name: str, backend: str, folder: int, counted: int) -> None:
        """`name` was admitted at `counted` bytes and begins to load."""
        self._models[name] = (backend, folder)
        self._pending[name] = _Pending(backend, folder, self._read(), counted)

    def finished(self, name: str, ok: bool) -> None:
        """The load of `name` ended; a successful one teaches its backend's factor."""
        pending = self._pending.pop(name, None)
        if pending is not None and ok:
            self._learn(pending.backend, pending.folder, self._read() - pending.rss_before)

    def unloading(self, name: str) -> tuple[str, int, int] | None:
        """Before unloading `name`: what `unloaded` needs to learn from the RSS it gives back."""
        model = self._models.get(name)
        return None if model is None else (*model, self._read())

    def unloaded(self, before: tuple[str, int, int] | None) -> None:
        if before is not None:
            backend, folder, rss_before = before
            self._learn(backend, folder, rss_before - self._read())

    def forget(self, name: str) -> None:
        self._models.pop(name, None)
        self._pending.pop(name, None)

    def _learn(self, backend: str, folder: int, change: int) -> None:
        self.factors[backend] = learned_factor(self.factors.get(backend, 1.0), folder, change)
