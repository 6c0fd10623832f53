"""`--model-memory-accounting=process`: the memory budget bounds the process's resident memory.

Counting folder sizes bounds what is counted, not the process: a backend holds far more than its
model file (copies per instance, arenas, activations). In this mode a load is admitted when the
resident memory (RSS, from /proc/self/statm) above a baseline taken before the first load, plus
the memory of the models still loading, plus an estimate for the new model stays within the
budget. The estimate is the model's folder size times a factor per backend learned in this
process: the largest ratio seen so far of RSS growth to model files loaded (1 until a model of that
backend has loaded). Loads are measured in stretches, from the first starting while none runs to
the last of those ending: the RSS growth over the stretch divided by the bytes of files it loaded.
A stretch teaches nothing when it mixes backends, a load in it failed, or a model was unloaded
during it (RSS fell for another reason). The backend's first stretch also pays its one-time
start-up (measured for ONNX Runtime: about 20 MiB that stays after every model is unloaded), so its
ratio holds only until the next stretch's replaces it. Unloads teach nothing: the heap trim after
one also hands back memory freed long before. The largest ratio keeps the estimate on the safe
side; the RSS check itself corrects whatever the estimate misses once a model is resident
(activations, arenas grown by requests).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class _Stretch:
    """Loads that ran together: from the first one starting to the last one ending."""

    rss_before: int
    folders: dict[str, int] = field(default_factory=dict)  # backend -> bytes of files loaded
    spoiled: bool = False  # a load failed or a model was unloaded meanwhile: the growth is not theirs


class ProcessMemory:
    """The baseline, the learned factors and the loads under way, for the process accounting mode."""

    def __init__(self, read: Callable[[], int] = resident_bytes) -> None:
        self._read = read
        self.baseline: int | None = None
        self.factors: dict[str, float] = {}  # backend -> learned factor
        self._first_only: set[str] = set()  # backends whose factor comes from their first stretch alone
        self._pending: dict[str, tuple[str, int, int]] = {}  # loading model -> (backend, folder, estimate)
        self._stretch: _Stretch | None = None

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
        return sum(estimate for _, _, estimate in self._pending.values())

    def estimate(self, backend: str, folder: int) -> int:
        return estimate(folder, self.factors.get(backend, 1.0))

    def fits(self, wanted: int, budget: int) -> bool:
        return fits(self.used(), self.loading(), wanted, budget)

    def started(self, name: str, backend: str, folder: int, counted: int) -> None:
        """`name` was admitted at `counted` bytes and begins to load."""
        if self._stretch is None:
            self._stretch = _Stretch(self._read())
        self._pending[name] = (backend, folder, counted)

    def finished(self, name: str, ok: bool) -> None:
        """The load of `name` ended; the last of a stretch teaches the factor (see the module)."""
        pending = self._pending.pop(name, None)
        stretch = self._stretch
        if pending is None or stretch is None:
            return
        backend, folder, _ = pending
        if ok:
            stretch.folders[backend] = stretch.folders.get(backend, 0) + folder
        else:
            stretch.spoiled = True
        if not self._pending:
            self._stretch = None
            if not stretch.spoiled and len(stretch.folders) == 1:
                self._learn(backend, stretch.folders[backend], self._read() - stretch.rss_before)

    def unloaded(self) -> None:
        """A model was unloaded: the loads under way will not see their whole growth."""
        if self._stretch is not None:
            self._stretch.spoiled = True

    def forget(self, name: str) -> None:
        """`name` is unloaded, or its load is abandoned."""
        if self._pending.pop(name, None) is not None and self._stretch is not None:
            self._stretch.spoiled = True
            if not self._pending:
                self._stretch = None

    def _learn(self, backend: str, folder: int, growth: int) -> None:
        known = self.factors.get(backend)
        factor = learned_factor(known, backend in self._first_only, folder, growth)
        if factor is None or growth <= 0:
            return
        log.info("RSS grew by %d bytes while %d bytes of '%s' models loaded: its factor is now %.2f",
                 growth, folder, backend, factor)  # fmt: skip
        if known is None:
            self._first_only.add(backend)
        else:
            self._first_only.discard(backend)
        self.factors[backend] = factor
