"""Tunes glibc's malloc for a server that allocates and frees megabyte tensors on every request.

By default glibc serves blocks over its (adaptive) mmap threshold with fresh mappings and gives the
top of the heap back to the kernel as soon as it is free. A request carrying a 600 KB image then
costs a round of brk/mmap calls and a page fault for every 4 KiB it touches, on the event loop's
thread: measured, that doubled the loop's CPU per request. Keeping freed memory for reuse removes
both costs; RSS settles at the working set's peak instead of breathing with every request.

What is kept is bounded. A burst of large requests (a 100 MiB gRPC message arrives in thousands
of small slices, allocated on grpc's threads) leaves hundreds of MiB free but scattered through
the heaps of several threads, where freeing never returns it: measured, RSS stayed 300 MiB above
its baseline after ten rejected 50-100 MiB requests. So the top of a thread's heap is given back
past TRIM_THRESHOLD (kept under the 64 MiB size of those heaps, or it never would be), and a
background thread hands every free page back with malloc_trim once more than RETAIN_FREE bytes
are free and that amount has stopped changing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# Blocks under 16 MiB come from the heap (glibc caps this at 32 MiB on 64-bit machines).
MMAP_THRESHOLD = 16 << 20
# Up to 32 MiB of free memory stays mapped at the top of a heap for the next requests.
TRIM_THRESHOLD = 32 << 20
# Grow the heap in steps of 16 MiB rather than page by page.
TOP_PAD = 16 << 20
# Free memory malloc may hold for reuse; more than this is given back once it stops changing
# (by more than SETTLE_BYTES between two checks CHECK_INTERVAL_S apart).
RETAIN_FREE = 64 << 20
SETTLE_BYTES = 1 << 20
CHECK_INTERVAL_S = 1.0

_ENV_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_malloc() -> bool:
    """Apply the settings above and start the FreeMemoryTrimmer; True when applied.

    Does nothing where the C library is not glibc, or when the operator already chose settings
    through glibc's own MALLOC_*_ environment variables.
    """
    if any(key in os.environ for key in _ENV_KEYS):
        log.info("malloc tuning left to the MALLOC_* environment variables")
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = {_M_MMAP_THRESHOLD: MMAP_THRESHOLD, _M_TRIM_THRESHOLD: TRIM_THRESHOLD, _M_TOP_PAD: TOP_PAD}
    if not all(mallopt(param, value) == 1 for param, value in settings.items()):
        return False
    trimmer = FreeMemoryTrimmer.for_glibc(libc)
    if trimmer is not None:
        trimmer.start()
    return True


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has it; other C libraries may not
    except (OSError, AttributeError):
        return None
    return libc


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


class FreeMemoryTrimmer:
    """A daemon thread that gives free heap pages back to the kernel once the free memory settles.

    Every `interval_s` it reads how much malloc holds free (`free_bytes`). When that is more than
    `retain` and has not moved by more than `settle` since the last check (a burst is over, or
    the server is idle) it calls `trim`, once: a trimmed heap still counts its pages as free, so
    the next trim waits until the free memory has moved and settled again. While it keeps moving
    (steady traffic reusing it) nothing is trimmed, which is what the tuning above is for. Both
    calls run on this thread, never on the event loop: malloc_trim takes milliseconds on large heaps.
    """

    def __init__(
        self,
        free_bytes: Callable[[], int],
        trim: Callable[[], object],
        retain: int = RETAIN_FREE,
        settle: int = SETTLE_BYTES,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._free_bytes = free_bytes
        self._trim = trim
        self._retain = retain
        self._settle = settle
        self._interval_s = interval_s
        self._last = -1
        self._trimmed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    @classmethod
    def for_glibc(cls, libc: Any) -> FreeMemoryTrimmer | None:
        """A trimmer over glibc's mallinfo2 and malloc_trim (None before glibc 2.33)."""
        try:
            mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
        except AttributeError:
            return None
        mallinfo2.restype = _MallInfo2
        mallinfo2.argtypes = []
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim.restype = ctypes.c_int
        return cls(lambda: int(mallinfo2().fordblks), lambda: malloc_trim(0))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="malloc-trimmer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def check(self) -> None:
        """One look at the free memory; trims it when it is large and has settled."""
        free = self._free_bytes()
        settled = abs(free - self._last) <= self._settle
        self._last = free
        if not settled:
            self._trimmed = False
        elif free > self._retain and not self._trimmed:
            self._trim()
            self._trimmed = True
            self.trims += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()
