"""The link between a frontend worker and the engine: numbered frames on one Unix stream socket.

A frame is a fixed header (request id, kind, head length, body length), a small head (a pickled
tuple: both ends are modelport processes of one server, started together, on a socket in a
private folder) and the body bytes, appended as they are. The requests of one worker share its
connection; answers come back in any order, matched by request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import pickle
import struct
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IBIQ")  # request id, kind, head length, body length
# A request's head is its line and headers (HTTP: at most 64 KiB + one read, frontends/http/protocol.py)
# or its gRPC metadata (grpc's limit: 8 KiB by default); this bound only stops a broken peer.
MAX_HEAD_BYTES = 4 * 1024 * 1024
SCRATCH_BYTES = 256 * 1024  # small frames are read many at a time into this buffer
DIRECT_BYTES = 64 * 1024  # a body from this size is read straight into a buffer of its own

Body = bytes | bytearray
FrameHandler = Callable[[int, int, Any, Body], None]
PartHandler = Callable[[Any, Body], None]


class Kind(enum.IntEnum):
    HELLO = 1  # worker -> engine, first: (worker index, pid)
    HTTP = 2  # worker -> engine: the request's head; its body
    GRPC_INFER = 3  # worker -> engine: invocation metadata; a serialized ModelInferRequest
    ANSWER = 4  # engine -> worker: the answer's head; its body
    CANCEL = 5  # worker -> engine: the client went away, no answer is wanted
    PART = 6  # engine -> worker: a part of a streamed answer (an HTTP body sent as it is made)


class LinkError(Exception):
    """The link is down, or a frame broke its rules."""


class FrameProtocol(asyncio.BufferedProtocol):
    """Reads frames (a large body straight into its own buffer, without another copy) and writes them.

    `on_frame(request_id, kind, head, body)` is called on the loop for each frame read; a frame
    over the bounds closes the connection. Writers wait in drain() while the peer reads slowly.
    """

    def __init__(self, on_frame: FrameHandler, max_body: int) -> None:
        self._on_frame = on_frame
        self._max_body = max_body
        self._scratch = bytearray(SCRATCH_BYTES)
        self._start = 0  # unread data in the scratch buffer: [start, end)
        self._end = 0
        self._frame: tuple[int, int, Any] | None = None  # the frame whose body is read directly
        self._body: bytearray | None = None
        self._filled = 0
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._outgoing: list[Body] = []  # frames to write at the end of this turn of the loop
        self._flush_scheduled = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- reading -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return memoryview(self._body)[self._filled :]
        if self._end == len(self._scratch):
            self._compact(len(self._scratch))
        return memoryview(self._scratch)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None:
            self._filled += nbytes
            if self._filled == len(self._body):
                assert self._frame is not None
                (request_id, kind, head), body = self._frame, self._body
                self._frame, self._body = None, None
                self._on_frame(request_id, kind, head, body)
            return
        self._end += nbytes
        try:
            self._parse()
        except Exception as exc:  # a frame over the bounds, or a head that does not unpickle
            log.error("closing the frontend link: %s", exc)
            self.close()

    def _parse(self) -> None:
        scratch = memoryview(self._scratch)
        while self._end - self._start >= HEADER.size:
            request_id, kind, head_length, body_length = HEADER.unpack_from(scratch, self._start)
            if head_length > MAX_HEAD_BYTES or body_length > self._max_body:
                raise LinkError(f"a frame of {head_length} + {body_length} bytes is over the limits")
            direct = body_length >= DIRECT_BYTES
            needed = HEADER.size + head_length + (0 if direct else body_length)
            if self._end - self._start < needed:
                if needed > len(self._scratch) - self._start:
                    self._compact(needed)
                return
            head_end = self._start + HEADER.size + head_length
            head = pickle.loads(scratch[self._start + HEADER.size : head_end])
            if not direct:
                self._start = head_end + body_length
                self._on_frame(request_id, kind, head, bytes(scratch[head_end : self._start]))
                continue
            body = bytearray(body_length)
            have = min(self._end - head_end, body_length)
            body[:have] = scratch[head_end : head_end + have]
            self._start = head_end + have
            if have == body_length:
                self._on_frame(request_id, kind, head, body)
                continue
            self._frame, self._body, self._filled = (request_id, kind, head), body, have
            break
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._scratch) > SCRATCH_BYTES:  # a very large head grew it
                self._scratch = bytearray(SCRATCH_BYTES)

    def _compact(self, capacity: int) -> None:
        """Move the unread data to the front of a scratch buffer of at least `capacity` bytes."""
        unread = self._scratch[self._start : self._end]
        if capacity > len(self._scratch):
            self._scratch = bytearray(capacity)
        self._scratch[: len(unread)] = unread
        self._start, self._end = 0, len(unread)

    # --- writing -------------------------------------------------------------------------
    def send(self, request_id: int, kind: int, head: Any, body: Body = b"") -> None:
        """Queue one frame for writing; raises LinkError when the link is down.

        The frames queued in one turn of the event loop go out together at its end, in one system
        call: under load many answers (or requests) share a write.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkError("the frontend link is closed")
        head_bytes = pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL)
        header = HEADER.pack(request_id, kind, len(head_bytes), len(body))
        if len(body) < DIRECT_BYTES:
            self._outgoing.append(b"".join((header, head_bytes, body)))
        else:
            self._outgoing.append(header + head_bytes)
            self._outgoing.append(body)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the queued frames now."""
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(outgoing)

    async def drain(self) -> None:
        """Return once the peer has taken what is queued (at once unless writing is paused)."""
        if self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers(None)

    def _wake_writers(self, error: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    # --- ending --------------------------------------------------------------------------
    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._outgoing = []
        self._wake_writers(LinkError("the frontend link is closed"))
        if not self.lost.done():
            self.lost.set_result(None)


class LinkClient(FrameProtocol):
    """The worker's end: each call sends one frame and waits for the answer with the same id."""

    def __init__(self, max_body: int) -> None:
        super().__init__(self._on_answer, max_body)
        self._waiting: dict[int, asyncio.Future[tuple[Any, Body]]] = {}
        self._parts: dict[int, PartHandler] = {}
        self._next_id = 0

    async def call(
        self, kind: Kind, head: Any, body: Body = b"", on_part: PartHandler | None = None
    ) -> tuple[Any, Body]:
        """Send a request frame and return the answer's (head, body); LinkError when the link is down.

        `on_part(head, body)` gets each PART of a streamed answer as it arrives, before the answer.
        A cancelled call tells the engine, which cancels its side of the request.
        """
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        request_id = self._next_id
        answer: asyncio.Future[tuple[Any, Body]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        if on_part is not None:
            self._parts[request_id] = on_part
        try:
            self.send(request_id, kind, head, body)
            await self.drain()
            return await answer
        except asyncio.CancelledError:
            if self._waiting.pop(request_id, None) is not None:
                with contextlib.suppress(LinkError):
                    self.send(request_id, Kind.CANCEL, None)
            raise
        finally:
            self._waiting.pop(request_id, None)
            if on_part is not None:
                self._parts.pop(request_id, None)

    def _on_answer(self, request_id: int, kind: int, head: Any, body: Body) -> None:
        if kind == Kind.PART:
            on_part = self._parts.get(request_id)
            if on_part is not None:
                on_part(head, body)
            return
        answer = self._waiting.pop(request_id, None)
        if answer is not None and not answer.done():
            answer.set_result((head, body))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(LinkError("the engine closed the frontend link"))


async def connect(path: str, max_body: int) -> LinkClient:
    """The worker's connection to the engine's link socket at `path`."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_unix_connection(lambda: LinkClient(max_body), path)
    return client
