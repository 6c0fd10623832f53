"""Call: one RPC on one HTTP/2 stream, from its request messages to its trailers.

A unary call runs its handler once the request stream has ended with one message; a streaming
call runs at once and reads its requests as they arrive (RequestStream). A call ends exactly once
(`_finish`): with the handler's status, an error in the request's framing, its deadline (grpc-timeout)
or the client's RST_STREAM, which cancels the handler's task and sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from modelport.frontends.grpc.errors import internal_message
from modelport.frontends.grpc.h2.context import CallContext
from modelport.frontends.grpc.h2.headers import RESPONSE_HEADERS, Headers, status_headers, trailers_only
from modelport.frontends.grpc.h2.messages import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    INTERNAL,
    RESOURCE_EXHAUSTED,
    UNKNOWN,
    Message,
    MessageReader,
    WireError,
    framed,
    prefix,
)
from modelport.frontends.grpc.h2.service import Method, Service

log = logging.getLogger(__name__)

# A response this large goes out as its prefix and itself, not copied into one buffer.
_COPY_BELOW = 64 * 1024


class Link(Protocol):
    """What a call needs from its connection."""

    def send(
        self, stream_id: int, headers: Headers | None, data: tuple[bytes, ...], trailers: Headers | None
    ) -> None:
        """HEADERS (when given), then DATA under flow control, then the trailers that end the stream."""

    def acknowledge(self, stream_id: int, size: int) -> None: ...
    async def drained(self, stream_id: int) -> None: ...
    def call_ended(self, call: Call) -> None: ...


class Call:
    """One RPC; the connection feeds it DATA and stream events, the handler's task answers it."""

    __slots__ = (
        "_closed", "_link", "_method", "_reader", "_request", "_requests", "_responded",
        "_send_limit", "_service", "_task", "_timer", "_unacked", "context", "stream_id", "streaming",
    )  # fmt: skip

    def __init__(
        self, link: Link, stream_id: int, method: Method, service: Service, reader: MessageReader,
        context: CallContext, send_limit: int,
    ) -> None:  # fmt: skip
        self.stream_id = stream_id
        self.context = context
        self.streaming = method.streaming
        self._link = link
        self._method = method
        self._service = service
        self._reader = reader
        self._send_limit = send_limit
        self._request: Message | None = None
        self._requests = RequestStream(method.parse, self._acknowledge) if method.streaming else None
        self._unacked = 0
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._responded = False
        self._closed = False

    # --- driven by the connection -----------------------------------------------------------
    def start_stream(self) -> None:
        """A streaming call's handler runs from its headers on."""
        self._task = asyncio.get_running_loop().create_task(self._run_stream())

    def set_deadline(self, seconds: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(seconds, self.expire)

    def feed(self, data: bytes, flow_controlled: int) -> None:
        """Request DATA: whole messages go to the handler; an error in the framing ends the call."""
        try:
            messages = self._reader.feed(data)
        except WireError as exc:
            self._link.acknowledge(self.stream_id, flow_controlled)
            self.fail(exc.code, exc.message)
            return
        if self._requests is None:
            self._link.acknowledge(self.stream_id, flow_controlled)
            if messages and self._request is None:
                self._request = messages[0]
            return
        self._unacked += flow_controlled  # given back when the handler takes the message
        for message in messages:
            self._requests.put(message, self._unacked)
            self._unacked = 0

    def end_of_requests(self) -> None:
        if self._closed:
            return
        if self._reader.partial:
            self.fail(INTERNAL, "Encountered end-of-stream mid-frame")
        elif self._requests is not None:
            self._requests.close()
        elif self._request is None:
            self.fail(INTERNAL, "Half-closed without a request")
        else:
            request, self._request = self._request, None
            self._task = asyncio.get_running_loop().create_task(self._run_unary(request))

    def fail(self, code: int, message: str) -> None:
        """End the call now with `code` (its handler, if running, is cancelled)."""
        self._finish(code, message)
        self._stop_task()

    def expire(self) -> None:
        self._timer = None
        self.fail(DEADLINE_EXCEEDED, "Deadline Exceeded")

    def cancel(self) -> None:
        """The client reset the stream, or the connection is gone: stop without answering."""
        if self._closed:
            return
        self._closed = True
        self.context.mark_cancelled()
        self._stop_task()
        self._clear_timer()

    # --- the handler's side -----------------------------------------------------------------
    async def _run_unary(self, request: Message) -> None:
        method, context = self._method, self.context
        assert method.unary is not None
        try:
            await self._wait_for_startup()
            message = method.parse(request)
            del request
            response = await method.unary(message, context)
            del message
            code, details = context.status()
            if code:
                self._finish(code, details)
            else:
                self._respond(method.serialize(response), last=True)
        except grpc.aio.AbortError as exc:
            self._finish(*_aborted(context, exc))
        except asyncio.CancelledError:
            self._finish(CANCELLED, "Cancelled")  # nothing to send when the call ended first
            raise
        except Exception as exc:  # the servicer's handlers answer their own errors; this is a bug
            log.exception("internal error in %s", method.name)
            self._finish(INTERNAL, internal_message(exc))

    async def _run_stream(self) -> None:
        method, context = self._method, self.context
        assert method.stream is not None and self._requests is not None
        try:
            await self._wait_for_startup()
            responses = method.stream(self._requests, context)
            try:
                async for response in responses:
                    self._respond(method.serialize(response), last=False)
                    if self._closed:
                        return
                    await self._link.drained(self.stream_id)
            finally:
                await responses.aclose()
            self._finish(*context.status())
        except grpc.aio.AbortError as exc:
            self._finish(*_aborted(context, exc))
        except asyncio.CancelledError:
            self._finish(CANCELLED, "Cancelled")  # nothing to send when the call ended first
            raise
        except Exception as exc:
            log.exception("internal error in %s", method.name)
            self._finish(INTERNAL, internal_message(exc))

    async def _wait_for_startup(self) -> None:
        server = self._service.server
        if self._method.gated and not server.started:
            await server.wait_started()

    def _respond(self, payload: bytes, last: bool) -> None:
        """Send one response message (and, for a unary call, the OK trailers after it)."""
        if self._closed:
            return
        size = len(payload)
        if size > self._send_limit:
            limit = self._send_limit
            self.fail(RESOURCE_EXHAUSTED, f"SERVER: Sent message larger than max ({size} vs. {limit})")
            return
        headers = None
        if not self._responded:
            self._responded = True
            headers = RESPONSE_HEADERS
        data = (framed(payload),) if size < _COPY_BELOW else (prefix(size), payload)
        if last:
            self._close(0, "", headers, data)
        else:
            self._link.send(self.stream_id, headers, data, None)

    def _finish(self, code: int, message: str) -> None:
        self._close(code, message, None, ())

    def _close(self, code: int, message: str, headers: Headers | None, data: tuple[bytes, ...]) -> None:
        """The call's last frames: what is left of its response, then its status."""
        if self._closed:
            return
        self._closed = True
        self.context.mark_done()
        self._clear_timer()
        trailing = self.context.trailing_metadata()
        if self._responded:
            trailers = status_headers(code, message, trailing)
        else:
            trailers = trailers_only(code, message, trailing)
        self._link.send(self.stream_id, headers, data, trailers)
        self._link.call_ended(self)

    def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _clear_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _acknowledge(self, size: int) -> None:
        if not self._closed:
            self._link.acknowledge(self.stream_id, size)


def _aborted(context: CallContext, error: BaseException) -> tuple[int, str]:
    """The status an aborted call ends with.

    The error's traceback holds the handlers' frames, one of which holds the error: a cycle that
    would keep the request (maybe 100 MiB) until the garbage collector runs. It is cut here.
    """
    error.__traceback__ = None
    code, details = context.status()
    return (code or UNKNOWN), details  # an abort always carries a status


class RequestStream:
    """A streaming call's request messages, as the async iterator its handler reads.

    Each message's share of the receive window is handed back when the handler takes it, so a
    client that sends faster than the handler reads is held back by HTTP/2 flow control.
    """

    __slots__ = ("_ack", "_ended", "_items", "_parse", "_waiter")

    def __init__(self, parse: Callable[[Any], Any], ack: Callable[[int], None]) -> None:
        self._parse = parse
        self._ack = ack
        self._items: deque[tuple[Message, int]] = deque()
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: Message, flow_controlled: int) -> None:
        self._items.append((message, flow_controlled))
        self._wake()

    def close(self) -> None:
        self._ended = True
        self._wake()

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message, flow_controlled = self._items.popleft()
        if flow_controlled:
            self._ack(flow_controlled)
        return self._parse(message)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
