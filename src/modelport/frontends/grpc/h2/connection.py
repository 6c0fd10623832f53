"""GrpcConnection: one client connection, an asyncio Protocol that feeds the socket's bytes to h2's
H2Connection and turns its events into calls.

Bytes h2 has to send go out at the end of each `data_received` and, for answers produced later by
the calls' tasks, once per turn of the event loop (so answers finishing together share a write).
New streams are refused while too many response bytes wait for the client's windows, and reading
pauses while the transport's write buffer is full. `drain()` sends GOAWAY and closes the
connection once its calls are answered (h2 has no graceful GOAWAY of its own, so the first one is
written beside it with hyperframe: h2 keeps serving the streams it knows).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from modelport.frontends.grpc.h2.admission import HttpRefusal, open_call
from modelport.frontends.grpc.h2.calls import Call
from modelport.frontends.grpc.h2.headers import Headers, parse_request, trailers_only
from modelport.frontends.grpc.h2.keepalive import Keepalive
from modelport.frontends.grpc.h2.messages import UNAVAILABLE, WireError
from modelport.frontends.grpc.h2.options import H2Options
from modelport.frontends.grpc.h2.outbox import Outbox
from modelport.frontends.grpc.h2.service import Service

log = logging.getLogger(__name__)

_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)
_LAST_STREAM = 2**31 - 1


class GrpcConnection(asyncio.Protocol):
    """Serves the calls of one HTTP/2 connection; `connections` holds the server's live ones."""

    def __init__(self, service: Service, options: H2Options, connections: set[GrpcConnection]) -> None:
        self._service = service
        self._options = options
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._h2 = H2Connection(config=_CONFIG)
        self._outbox = Outbox(self._h2, options.stream_bound)
        self._calls: dict[int, Call] = {}
        self._peer = ""
        self._receiving = False  # inside data_received, which writes at its end
        self._flush_scheduled = False
        self._draining = False
        self._gone = False
        self._last_stream = _LAST_STREAM  # streams above it are refused once draining
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes = 0  # HEADERS, DATA and WINDOW_UPDATE written: the keepalive rules count them
        self._keepalive = Keepalive(
            options, ping=self._ping, goaway=self.drain, close=self.abort,
            busy=lambda: bool(self._calls), writes=lambda: self.writes,
        )  # fmt: skip
        self._dispatch: dict[type, Any] = {
            RequestReceived: self._on_request,
            DataReceived: self._on_data,
            StreamEnded: self._on_end,
            StreamReset: self._on_reset,
            WindowUpdated: self._on_window,
            RemoteSettingsChanged: self._on_settings,
            ConnectionTerminated: self._on_terminated,
            PingReceived: self._on_ping,
            PingAckReceived: self._on_ping_ack,
        }

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._peer = _peer(transport.get_extra_info("peername"))
        self._connections.add(self)
        h2, options = self._h2, self._options
        h2.initiate_connection()
        h2.update_settings({
            SettingCodes.MAX_CONCURRENT_STREAMS: options.max_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: options.stream_window,
            SettingCodes.MAX_FRAME_SIZE: options.max_frame,
        })  # fmt: skip
        # h2 takes the larger frame size only once the client's ACK is read, and checks frames
        # against the old one when the ACK and a large frame arrive in one read: accept at once.
        h2.max_inbound_frame_size = options.max_frame
        h2.increment_flow_control_window(options.connection_window - 65535)
        self._flush()
        self._keepalive.start()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as exc:  # h2 has queued GOAWAY
            log.debug("closing a gRPC connection from %s: %s", self._peer, exc)
            self._close()
            return
        self._receiving = True
        try:
            dispatch = self._dispatch
            for event in events:
                handler = dispatch.get(type(event))
                if handler is not None:
                    handler(event)
        finally:
            self._receiving = False
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._keepalive.stop()
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.cancel()
        self._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._outbox.writable = False
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._outbox.writable = True
        if self._transport is not None and not self._gone:
            self._transport.resume_reading()
            self._outbox.resume()
            self._flush()

    # --- h2 events -----------------------------------------------------------------------------
    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if stream_id > self._last_stream or self._outbox.pending > self._options.outbox_limit:
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)  # clients retry these
            return
        try:
            head = parse_request(event.headers or ())
            call = open_call(self, stream_id, head, self._service, self._options, self._peer)
        except WireError as exc:
            self._outbox.close(stream_id, trailers_only(exc.code, exc.message))
            return
        except HttpRefusal as exc:
            self._outbox.close(stream_id, [(b":status", exc.status)])
            return
        self._calls[stream_id] = call
        if call.streaming:
            call.start_stream()

    def _on_data(self, event: DataReceived) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            if event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        call.feed(event.data, event.flow_controlled_length)

    def _on_end(self, event: StreamEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.end_of_requests()

    def _on_reset(self, event: StreamReset) -> None:
        call = self._calls.pop(event.stream_id, None)
        if call is not None:
            call.cancel()
        self._outbox.discard(event.stream_id)

    def _on_window(self, event: WindowUpdated) -> None:
        if self._outbox.pending:
            self._outbox.resume(event.stream_id)

    def _on_settings(self, event: RemoteSettingsChanged) -> None:
        changed = event.changed_settings
        if SettingCodes.INITIAL_WINDOW_SIZE in changed or SettingCodes.MAX_FRAME_SIZE in changed:
            self._outbox.resume()

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        # The client's GOAWAY: h2 sends nothing more on this connection, so its calls end here.
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.cancel()
        self._close()

    def _on_ping(self, event: PingReceived) -> None:
        if self._keepalive.policy.received_ping(not self._calls, self.writes):
            self._h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings")
            self._close()

    def _on_ping_ack(self, event: PingAckReceived) -> None:
        self._keepalive.ping_acknowledged(event.ping_data)

    # --- what calls use (calls.Link) -----------------------------------------------------------
    def send(
        self, stream_id: int, headers: Headers | None, data: tuple[bytes, ...], trailers: Headers | None
    ) -> None:
        if self._gone:
            return
        outbox = self._outbox
        try:
            if headers is not None:
                self._h2.send_headers(stream_id, headers)
            for chunk in data:
                outbox.data(stream_id, chunk)
            if trailers is not None:
                outbox.end(stream_id, trailers)
        except StreamClosedError:  # h2 reset the stream itself (a client's protocol error on it)
            outbox.discard(stream_id)
        self.writes += 1
        self._flush_soon()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self._gone:
            self._h2.acknowledge_received_data(size, stream_id)
            self.writes += 1
            self._flush_soon()

    async def drained(self, stream_id: int) -> None:
        await self._outbox.drained(stream_id)

    def call_ended(self, call: Call) -> None:
        self._calls.pop(call.stream_id, None)

    # --- shutdown ------------------------------------------------------------------------------
    def drain(self) -> None:
        """GOAWAY: take no new calls, close once the running ones are answered."""
        if self._draining or self._gone or self._transport is None:
            return
        self._draining = True
        self._last_stream = self._h2.highest_inbound_stream_id
        self._flush()
        self._transport.write(GoAwayFrame(0, last_stream_id=self._last_stream, error_code=0).serialize())
        self._close_if_idle()

    def abort(self) -> None:
        """Stop now: calls still running end UNAVAILABLE, then the connection closes."""
        for call in list(self._calls.values()):
            call.fail(UNAVAILABLE, "Server shutting down")
        if not self._gone:
            self._h2.close_connection(last_stream_id=self._h2.highest_inbound_stream_id)
            self._close()

    def force_close(self) -> None:
        if self._transport is not None and not self._gone:
            self._transport.abort()

    # --- writing -------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._gone and self._transport is not None:
            self._transport.write(data)
        if self._draining:
            self._close_if_idle()

    def _flush_soon(self) -> None:
        if not self._receiving and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _ping(self, payload: bytes) -> None:
        if not self._gone:
            self._h2.ping(payload)
            self._flush()

    def _close_if_idle(self) -> None:
        if not self._calls and not self._outbox.pending and not self._gone:
            self._gone = True  # nothing may be sent after the final GOAWAY
            self._h2.close_connection(last_stream_id=self._last_stream)
            self._write_and_close()

    def _close(self) -> None:
        if not self._gone:
            self._gone = True
            self._write_and_close()

    def _write_and_close(self) -> None:
        data = self._h2.data_to_send()
        if self._transport is not None:
            if data:
                self._transport.write(data)
            self._transport.close()


def _peer(address: Any) -> str:
    """grpc's form of a peer address: ipv4:1.2.3.4:5 or ipv6:[::1]:5."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return str(address or "")
