"""Response bytes under HTTP/2 send flow control: what does not fit the peer's windows waits here,
per stream, with the trailers that must follow it, until WINDOW_UPDATE or SETTINGS make room.

A small response that fits goes straight into h2; the usual answer never touches the queues.
Streaming calls wait on `drained()` before producing more while their stream holds too much.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError

Header = tuple[bytes, bytes]


@dataclass(slots=True)
class _Pending:
    """One stream's queued output."""

    chunks: deque[memoryview] = field(default_factory=deque)
    size: int = 0
    trailers: list[Header] | None = None
    waiter: asyncio.Future[None] | None = None


class Outbox:
    """Writes DATA and trailers into `h2` as its send windows allow; `pending` bytes wait."""

    def __init__(self, h2: H2Connection, stream_bound: int) -> None:
        self._h2 = h2
        self._streams: dict[int, _Pending] = {}
        self._stream_bound = stream_bound  # a stream holding more makes its producer wait
        self.pending = 0
        self.writable = True  # False while the transport's buffer is full

    def data(self, stream_id: int, chunk: bytes) -> None:
        """Send `chunk` on the stream now, or as soon as the windows let it through."""
        h2 = self._h2
        if (
            self.writable
            and stream_id not in self._streams
            and len(chunk) <= h2.max_outbound_frame_size
            and len(chunk) <= h2.local_flow_control_window(stream_id)
        ):
            h2.send_data(stream_id, chunk)
            return
        queued = self._streams.get(stream_id)
        if queued is None:
            queued = self._streams[stream_id] = _Pending()
        queued.chunks.append(memoryview(chunk))
        queued.size += len(chunk)
        self.pending += len(chunk)
        self._push(stream_id, queued)

    def end(self, stream_id: int, trailers: list[Header]) -> None:
        """End the stream with `trailers` once its queued data is out."""
        queued = self._streams.get(stream_id)
        if queued is None:
            self.close(stream_id, trailers)
        else:
            queued.trailers = trailers

    def discard(self, stream_id: int) -> None:
        """Forget a stream's output (it was reset)."""
        queued = self._streams.pop(stream_id, None)
        if queued is not None:
            self.pending -= queued.size
            _wake(queued)

    async def drained(self, stream_id: int) -> None:
        """Return once the stream holds less than the bound (at once when it does already)."""
        queued = self._streams.get(stream_id)
        if queued is None or queued.size < self._stream_bound:
            return
        queued.waiter = asyncio.get_running_loop().create_future()
        await queued.waiter

    def resume(self, stream_id: int = 0) -> None:
        """Send what the windows allow now: every stream's output, or one stream's."""
        if stream_id:
            queued = self._streams.get(stream_id)
            if queued is not None:
                self._push(stream_id, queued)
            return
        for sid, queued in list(self._streams.items()):
            self._push(sid, queued)

    def _push(self, stream_id: int, queued: _Pending) -> None:
        try:
            self._send_queued(stream_id, queued)
        except StreamClosedError:  # h2 reset the stream itself
            self.discard(stream_id)
            return
        if queued.size < self._stream_bound:
            _wake(queued)
        if not queued.chunks:
            del self._streams[stream_id]  # what comes next may go straight out again
            if queued.trailers is not None:
                self.close(stream_id, queued.trailers)

    def _send_queued(self, stream_id: int, queued: _Pending) -> None:
        h2 = self._h2
        chunks = queued.chunks
        while chunks and self.writable:
            room = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
            if room <= 0:
                return
            chunk = chunks[0]
            if len(chunk) <= room:
                chunks.popleft()
            else:
                chunks[0], chunk = chunk[room:], chunk[:room]
            h2.send_data(stream_id, chunk.tobytes())
            queued.size -= len(chunk)
            self.pending -= len(chunk)

    def close(self, stream_id: int, headers: list[Header]) -> None:
        """Send the stream's last HEADERS; a client still sending is told to stop (RST_STREAM NO_ERROR)."""
        h2 = self._h2
        h2.send_headers(stream_id, headers, end_stream=True)
        stream = h2.streams.get(stream_id)
        if stream is not None and not stream.closed:
            h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)


def _wake(queued: _Pending) -> None:
    if queued.waiter is not None and not queued.waiter.done():
        queued.waiter.set_result(None)
    queued.waiter = None
