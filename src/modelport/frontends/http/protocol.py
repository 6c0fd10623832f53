"""The HTTP/1.1 protocol uvicorn runs on the HTTP and metrics ports: httptools, with the head bounded.

httptools puts no limit on a request's line and headers, and uvicorn keeps them as they arrive: a
48 MiB header was read, stored and passed on. Here a request whose head has not ended after
MAX_HEAD_BYTES gets 431 and its connection is closed. The count is per read from the socket,
so a head may pass the limit by at most one read (256 KiB) before it is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024

_REFUSAL = b'{"error":"request line and headers exceed the limit of %d bytes"}' % MAX_HEAD_BYTES
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)


class PairedWrites:
    """A transport that sends a write together with the one that follows it, in one system call.

    uvicorn writes a response's head and its body separately, one system call each. Here the
    first write waits for the second (they come in the same turn of the event loop) and both go
    out as one `writelines`; a write that no other follows goes out at the end of the turn.
    Everything else is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data if type(data) is bytes else bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head longer than MAX_HEAD_BYTES; a
    response's head and body leave in one write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a request head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(PairedWrites(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._in_head = False
            self.transport.write(_RESPONSE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
