"""Monotonic clocks (the real one and a fake that tests advance by hand) and deadlines on the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    """A source of monotonic time in nanoseconds."""

    def now_ns(self) -> int: ...


class MonotonicClock:
    """The process's monotonic clock."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        self._now += ns


class Deadline:
    """A bound on a wait: a point on the event loop's clock, and an event that ends every wait at once.

    One Deadline bounds a whole shutdown (drain, retiring versions, stopping schedulers); a second
    stop signal sets `cut`, which ends whatever is waiting on it.
    """

    def __init__(self, timeout_s: float, cut: asyncio.Event | None = None) -> None:
        self._at = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        self.cut = cut if cut is not None else asyncio.Event()

    def remaining(self) -> float:
        """Seconds left (0 once passed or cut)."""
        if self.cut.is_set():
            return 0.0
        return max(0.0, self._at - asyncio.get_running_loop().time())

    async def wait(self, awaitable: Awaitable[object]) -> bool:
        """Wait for `awaitable` until the deadline or the cut; True if it finished in time.

        A future or task left unfinished is not cancelled: the caller decides what to do with it.
        """
        work = asyncio.ensure_future(awaitable)
        if work.done():
            return True
        cut = asyncio.ensure_future(self.cut.wait())
        try:
            await asyncio.wait({work, cut}, timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
        return work.done()
