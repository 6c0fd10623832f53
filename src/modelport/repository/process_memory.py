"""`--model-memory-accounting=process`: the memory budget bounds the process's resident memory.

Counting folder sizes bounds what is counted, not the process: a backend holds far more than its
model file (copies per instance, arenas, activations). In this mode a load is admitted when the
resident memory (RSS, from /proc/self/statm) above a baseline taken before the first load, plus
the memory of the models still loading, plus an estimate for the new model stays within the
budget. The estimate is the model's folder size times a factor per backend learned in this
process: the largest ratio seen so far of the RSS a model's load added to its folder size (1 until
a model of that backend has loaded). Two kinds of load teach nothing or little: one that overlapped
another load (the RSS grew for both), and the backend's first load, which also pays the backend's
one-time start-up (measured for ONNX Runtime: about 23 MiB that stays after every model is
unloaded), so its ratio holds only until the next load's replaces it. Unloads teach nothing: the
heap trim after an unload also hands back memory freed long before. The largest ratio keeps the
estimate on the safe side; the RSS check itself corrects whatever the estimate misses once a model
is resident (activations, arenas grown by requests).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

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


def learned_factor(current: float | None, first_only: bool, folder: int, growth: int) -> float | None:
    """The factor after a clean load of `folder` bytes grew the RSS by `growth` bytes.

    `current` is the factor so far (None: nothing learned yet); `first_only` says it came from the
    backend's first load alone, whose ratio the next one replaces.
    """
    if folder <= 0 or growth <= 0:
        return current
    ratio = growth / folder
    return ratio if current is None or first_only else max(current, ratio)


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
    overlapped: bool = False  # another load ran meanwhile: the RSS growth is not this model's alone


class ProcessMemory:
    """The baseline, the learned factors and the loads under way, for the process accounting mode."""

    def __init__(self, read: Callable[[], int] = resident_bytes) -> None:
        self._read = read
        self.baseline: int | None = None
        self.factors: dict[str, float] = {}  # backend -> learned factor
        self._first_only: set[str] = set()  # backends whose factor comes from their first load alone
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
        overlapped = bool(self._pending)
        if overlapped:
            self._pending = {n: replace(p, overlapped=True) for n, p in self._pending.items()}
        self._pending[name] = _Pending(backend, folder, self._read(), counted, overlapped)

    def finished(self, name: str, ok: bool) -> None:
        """The load of `name` ended; a successful one that ran alone teaches its backend's factor."""
        pending = self._pending.pop(name, None)
        if pending is None or not ok or pending.overlapped:
            return
        backend, growth = pending.backend, self._read() - pending.rss_before
        known = self.factors.get(backend)
        factor = learned_factor(known, backend in self._first_only, pending.folder, growth)
        if factor is None or growth <= 0:
            return
        log.info("RSS grew by %d bytes while '%s' (%d bytes of files) loaded: the '%s' factor is now %.2f",
                 growth, name, pending.folder, backend, factor)  # fmt: skip
        if known is None:
            self._first_only.add(backend)
        else:
            self._first_only.discard(backend)
        self.factors[backend] = factor

    def forget(self, name: str) -> None:
        """`name` is unloaded, or its load is abandoned."""
        self._pending.pop(name, None)
