"""PairedWrites: a response's head and body leave together; a lone write still leaves in the same turn."""

from __future__ import annotations

import asyncio
from typing import Any

from modelport.frontends.http.protocol import PairedWrites


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, items: Any) -> None:
        self.calls.append(("writelines", list(items)))

    def close(self) -> None:
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return False


async def test_two_writes_in_one_turn_leave_in_one_call() -> None:
    inner = _Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    paired.write(b"HTTP/1.1 200 OK\r\n\r\n")
    paired.write(b"body")
    await asyncio.sleep(0)
    assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"])]


async def test_a_lone_write_leaves_at_the_end_of_the_turn_and_close_sends_what_is_held() -> None:
    inner = _Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    paired.write(bytearray(b"HTTP/1.1 100 Continue\r\n\r\n"))
    assert inner.calls == []
    await asyncio.sleep(0)
    assert inner.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    paired.write(b"last")
    paired.close()
    assert inner.calls[1:] == [("write", b"last"), ("close", None)]
    assert paired.is_closing() is False  # everything else is the wrapped transport's
