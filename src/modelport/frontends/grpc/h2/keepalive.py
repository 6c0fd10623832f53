"""Keepalive for one connection, with grpc-core's rules: the server's PINGs and their timeout, the
abuse policy for the client's PINGs, and the maximum connection age.

* Every `keepalive_time` the server PINGs (while calls are in flight, or always when permitted),
  at most `max_pings_without_data` times between two writes of data; an unanswered PING closes the
  connection after `keepalive_timeout`.
* A client PING sooner than `min_ping_interval` after its previous one (two hours while no call is
  in flight, unless permitted) is a strike; strikes are forgiven whenever the server writes
  HEADERS, DATA or a WINDOW_UPDATE, and more than `max_ping_strikes` end the connection with
  GOAWAY ENHANCE_YOUR_CALM.
* A connection older than `max_age` (+-10%) gets GOAWAY; `max_age_grace` later it is closed.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

from modelport.frontends.grpc.h2.options import H2Options

_IDLE_PING_INTERVAL = 7200.0  # grpc-core's interval for pings while no call is in flight


class PingPolicy:
    """Counts a client's PINGs against the abuse rules (a pure policy over an injected clock)."""

    def __init__(self, options: H2Options, clock: Callable[[], float] = time.monotonic) -> None:
        self._options = options
        self._clock = clock
        self._last: float | None = None  # the first PING is always welcome
        self._strikes = 0
        self._writes = 0

    def received_ping(self, idle: bool, writes: int) -> bool:
        """A client PING, `writes` the count of the server's HEADERS, DATA and WINDOW_UPDATE writes so
        far (strikes are forgiven when it has moved); True when the PING is one too many."""
        if writes != self._writes:
            self._writes, self._strikes = writes, 0
        now = self._clock()
        options = self._options
        interval = (
            _IDLE_PING_INTERVAL if idle and not options.permit_without_calls else options.min_ping_interval
        )
        allowed = self._last is None or now >= self._last + interval
        self._last = now
        if allowed:
            return False
        self._strikes += 1
        return options.max_ping_strikes != 0 and self._strikes > options.max_ping_strikes


class Keepalive:
    """The timers of one connection; it calls back to ping, to say goodbye and to close."""

    def __init__(
        self,
        options: H2Options,
        *,
        ping: Callable[[bytes], None],
        goaway: Callable[[], None],
        close: Callable[[], None],
        busy: Callable[[], bool],
        writes: Callable[[], int],
    ) -> None:
        self._options = options
        self._ping, self._goaway, self._close, self._busy = ping, goaway, close, busy
        self._writes = writes
        self._writes_at_ping = 0
        self.policy = PingPolicy(options)
        self._handles: list[asyncio.TimerHandle] = []
        self._ping_timeout: asyncio.TimerHandle | None = None
        self._pings_without_data = 0
        self._payload = b""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._options.keepalive_time > 0:
            self._handles.append(loop.call_later(self._options.keepalive_time, self._tick))
        if self._options.max_age > 0:
            age = self._options.max_age * random.uniform(0.9, 1.1)  # grpc's jitter: not all at once
            self._handles.append(loop.call_later(age, self._aged))

    def stop(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        if self._ping_timeout is not None:
            self._ping_timeout.cancel()
            self._ping_timeout = None

    def ping_acknowledged(self, payload: bytes) -> None:
        if payload == self._payload and self._ping_timeout is not None:
            self._ping_timeout.cancel()
            self._ping_timeout = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._handles = [h for h in self._handles if not h.cancelled()]
        self._handles.append(loop.call_later(self._options.keepalive_time, self._tick))
        writes = self._writes()
        if writes != self._writes_at_ping:  # data went out since the last PING
            self._writes_at_ping, self._pings_without_data = writes, 0
        limit = self._options.max_pings_without_data
        if self._ping_timeout is not None or (limit and self._pings_without_data >= limit):
            return
        if not (self._busy() or self._options.permit_without_calls):
            return
        self._pings_without_data += 1
        self._payload = os.urandom(8)
        self._ping(self._payload)
        self._ping_timeout = loop.call_later(self._options.keepalive_timeout, self._close)

    def _aged(self) -> None:
        self._goaway()
        if self._options.max_age_grace > 0:
            loop = asyncio.get_running_loop()
            self._handles.append(loop.call_later(self._options.max_age_grace, self._close))
