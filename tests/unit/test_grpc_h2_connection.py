"""GrpcConnection in memory: an h2 client connection on one side, the server's protocol on the other,
bytes handed across by hand (no sockets). Flow control, cancellation, deadlines, streaming, the
startup gate, GOAWAY and the PING policy are checked frame by frame."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from modelport.config.settings import Restriction
from modelport.frontends.grpc.h2.connection import GrpcConnection
from modelport.frontends.grpc.h2.options import H2Options
from modelport.frontends.grpc.h2.service import Method
from modelport.frontends.restrictions import HeaderCheck

PREFIX = "/test.Service/"


class FakeServer:
    def __init__(self, started: bool = True) -> None:
        self.started = started
        self.ready = asyncio.Event()

    async def wait_started(self) -> None:
        await self.ready.wait()
        self.started = True


class FakeService:
    """Echo, Slow (waits for `release`), Fail, Stream (echoes each message twice), Locked (restricted)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.release = asyncio.Event()
        self.cancelled: list[str] = []

        def method(name: str, **kwargs: Any) -> Method:
            fields: dict[str, Any] = {
                "name": name, "streaming": False, "parse": bytes, "serialize": bytes, "unary": None,
                "stream": None, "restriction": None, "gated": name != "Live",
            }  # fmt: skip
            fields.update(kwargs)
            return Method(**fields)

        locked = HeaderCheck(Restriction("triton-grpc-protocol-key", "secret"))
        self.methods = {
            "Echo": method("Echo", unary=self.echo),
            "Live": method("Live", unary=self.echo),
            "Slow": method("Slow", unary=self.slow),
            "Fail": method("Fail", unary=self.fail),
            "Stream": method("Stream", streaming=True, stream=self.stream),
            "Locked": method("Locked", unary=self.echo, restriction=locked),
        }

    def lookup(self, path: bytes) -> Method | None:
        return self.methods.get(path.decode().removeprefix(PREFIX))

    async def echo(self, request: bytes, context: Any) -> bytes:
        return request

    async def slow(self, request: bytes, context: Any) -> bytes:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append("Slow")
            raise
        return request

    async def fail(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: caf\u00e9")
        raise AssertionError("unreachable")

    async def stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request
            yield request


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False
        self.protocol: GrpcConnection | None = None

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Peer:
    """The client: an h2 connection, the server protocol, and the events the client has seen."""

    def __init__(self, options: H2Options, server: FakeServer | None = None, window: int = 65535) -> None:
        self.service = FakeService(server or FakeServer())
        self.transport = FakeTransport()
        self.server = GrpcConnection(self.service, options, set())  # type: ignore[arg-type]
        self.transport.protocol = self.server
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        self.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.events: list[Any] = []
        self.server.connection_made(self.transport)
        self.exchange()

    def exchange(self, acknowledge: bool = True) -> None:
        """Hand bytes across until neither side has any to send."""
        while True:
            sent = self.client.data_to_send()
            if sent:
                self.server.data_received(sent)
            received, self.transport.out = bytes(self.transport.out), bytearray()
            if received:
                for event in self.client.receive_data(received):
                    self.events.append(event)
                    if acknowledge and isinstance(event, DataReceived):
                        self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if not sent and not received:
                return

    def start(self, method: str, headers: tuple[tuple[str, str], ...] = ()) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", PREFIX + method), (":authority", "x"),
            ("te", "trailers"), ("content-type", "application/grpc"), *headers,
        ])  # fmt: skip
        return stream_id

    def send(self, stream_id: int, payload: bytes, end: bool = True) -> None:
        data = b"\0" + len(payload).to_bytes(4, "big") + payload
        size = self.client.max_outbound_frame_size
        for start in range(0, len(data), size):
            last = start + size >= len(data)
            self.client.send_data(stream_id, data[start : start + size], end_stream=end and last)

    def call(self, method: str, payload: bytes, headers: tuple[tuple[str, str], ...] = ()) -> int:
        stream_id = self.start(method, headers)
        self.send(stream_id, payload)
        return stream_id

    def body(self, stream_id: int) -> bytes:
        data = [e.data for e in self.events if isinstance(e, DataReceived) and e.stream_id == stream_id]
        return b"".join(data)

    def status(self, stream_id: int) -> dict[bytes, bytes]:
        for event in self.events:
            if isinstance(event, (TrailersReceived, ResponseReceived)) and event.stream_id == stream_id:
                headers = dict(event.headers)
                if b"grpc-status" in headers:
                    return headers
        return {}

    def ended(self, stream_id: int) -> bool:
        return any(isinstance(e, StreamEnded) and e.stream_id == stream_id for e in self.events)


async def settle(peer: Peer, rounds: int = 5) -> None:
    """Let the server's tasks run and hand their output across."""
    for _ in range(rounds):
        await asyncio.sleep(0)
        peer.exchange()


OPTIONS = H2Options(receive_limit=4 << 20, send_limit=4 << 20)


async def test_unary_call() -> None:
    peer = Peer(OPTIONS)
    sid = peer.call("Echo", b"hello")
    await settle(peer)
    assert peer.body(sid) == b"\0\0\0\0\x05hello"
    assert peer.status(sid) == {b"grpc-status": b"0"} and peer.ended(sid)


async def test_a_response_larger_than_the_windows_waits_for_them() -> None:
    peer = Peer(OPTIONS, window=1000)  # the client's stream window; its connection window is 65535
    payload = bytes(range(256)) * 4096  # 1 MiB
    sid = peer.call("Echo", payload)
    await settle(peer)
    assert peer.body(sid)[5:] == payload  # h2's client fails on any frame past its windows
    assert peer.status(sid)[b"grpc-status"] == b"0"


async def test_without_window_updates_the_response_stops_at_the_window() -> None:
    peer = Peer(OPTIONS, window=1000)
    sid = peer.call("Echo", b"x" * 5000)
    for _ in range(5):
        await asyncio.sleep(0)
        peer.exchange(acknowledge=False)
    assert len(peer.body(sid)) == 1000 and not peer.ended(sid)
    assert peer.server._outbox.pending == 5005 - 1000
    peer.client.acknowledge_received_data(1000, sid)
    peer.client.increment_flow_control_window(8000, sid)
    await settle(peer)
    assert len(peer.body(sid)) == 5005 and peer.status(sid)[b"grpc-status"] == b"0"


async def test_client_reset_cancels_the_handler() -> None:
    peer = Peer(OPTIONS)
    sid = peer.call("Slow", b"x")
    await settle(peer)
    peer.client.reset_stream(sid, ErrorCodes.CANCEL)
    await settle(peer)
    assert peer.service.cancelled == ["Slow"]
    assert not peer.server._calls
    assert peer.status(sid) == {}  # nothing is sent for a call the client gave up


async def test_deadline_ends_the_call_and_cancels_the_handler() -> None:
    peer = Peer(OPTIONS)
    sid = peer.call("Slow", b"x", (("grpc-timeout", "20m"),))
    await settle(peer)
    await asyncio.sleep(0.05)
    await settle(peer)
    assert peer.status(sid) == {
        b":status": b"200", b"content-type": b"application/grpc",
        b"grpc-accept-encoding": b"identity, deflate, gzip",
        b"grpc-status": b"4", b"grpc-message": b"Deadline Exceeded",
    }  # fmt: skip
    assert peer.service.cancelled == ["Slow"]


async def test_abort_status_is_percent_encoded() -> None:
    peer = Peer(OPTIONS)
    sid = peer.call("Fail", b"x")
    await settle(peer)
    status = peer.status(sid)
    assert (status[b"grpc-status"], status[b"grpc-message"]) == (b"5", b"no such thing: caf%C3%A9")


async def test_errors_answered_from_the_headers() -> None:
    peer = Peer(OPTIONS)
    unknown = peer.call("Nope", b"x")
    locked = peer.call("Locked", b"x")
    allowed = peer.call("Locked", b"x", (("triton-grpc-protocol-key", "secret"),))
    encoding = peer.call("Echo", b"x", (("grpc-encoding", "br"),))
    timeout = peer.call("Echo", b"x", (("grpc-timeout", "soon"),))
    await settle(peer)
    assert peer.status(unknown)[b"grpc-message"] == b"Method not found!"
    assert peer.status(locked)[b"grpc-status"] == b"14"
    assert peer.status(locked)[b"grpc-message"] == (
        b"This protocol is restricted, expecting header 'triton-grpc-protocol-key'"
    )
    assert peer.status(allowed)[b"grpc-status"] == b"0"
    assert peer.status(encoding)[b"grpc-status"] == b"12"
    assert peer.status(timeout)[b"grpc-status"] == b"13"


async def test_answered_early_while_the_client_still_sends() -> None:
    peer = Peer(H2Options(receive_limit=100, send_limit=100))
    sid = peer.start("Echo")
    peer.client.send_data(sid, b"\0\0\0\x10\0" + b"x" * 1000)  # 1 MiB announced, the rest to come
    await settle(peer)
    assert peer.status(sid)[b"grpc-status"] == b"8"
    assert any(isinstance(e, StreamReset) and e.error_code == ErrorCodes.NO_ERROR for e in peer.events)
    assert peer.call("Echo", b"ok") and not peer.server._calls  # the connection carries on


async def test_requests_that_end_without_a_whole_message() -> None:
    peer = Peer(OPTIONS)
    empty = peer.start("Echo")
    peer.client.end_stream(empty)
    cut = peer.start("Echo")
    peer.client.send_data(cut, b"\0\0\0\0\x09abc", end_stream=True)
    await settle(peer)
    assert peer.status(empty)[b"grpc-message"] == b"Half-closed without a request"
    assert peer.status(cut)[b"grpc-message"] == b"Encountered end-of-stream mid-frame"


async def test_stream_answers_as_requests_arrive() -> None:
    peer = Peer(OPTIONS)
    sid = peer.start("Stream")
    expected = b""
    for word in (b"a", b"bb", b"ccc"):
        peer.send(sid, word, end=False)
        await settle(peer)
        expected += 2 * (b"\0" + len(word).to_bytes(4, "big") + word)
        assert peer.body(sid) == expected
    assert not peer.ended(sid)
    peer.client.end_stream(sid)
    await settle(peer)
    assert peer.status(sid)[b"grpc-status"] == b"0" and peer.ended(sid)


async def test_calls_wait_for_the_startup_models_but_liveness_does_not() -> None:
    server = FakeServer(started=False)
    peer = Peer(OPTIONS, server)
    gated = peer.call("Echo", b"x")
    live = peer.call("Live", b"x")
    await settle(peer)
    assert peer.ended(live) and not peer.ended(gated)
    server.ready.set()
    await settle(peer)
    assert peer.status(gated)[b"grpc-status"] == b"0"


def frames(data: bytes) -> list[Frame]:
    """The frames in `data` (what the server wrote)."""
    found = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        found.append(frame)
        data = data[9 + length :]
    return found


async def test_drain_finishes_calls_then_closes() -> None:
    # h2's client stops at the first GOAWAY, so from there on the server's frames are read raw.
    peer = Peer(OPTIONS)
    running = peer.call("Slow", b"x")
    await settle(peer)
    peer.server.drain()
    late = peer.start("Echo")
    peer.server.data_received(peer.client.data_to_send())
    written = frames(bytes(peer.transport.out))
    goaway = [f for f in written if isinstance(f, GoAwayFrame)]
    assert goaway and goaway[0].last_stream_id == running and goaway[0].error_code == 0
    refused = [f for f in written if isinstance(f, RstStreamFrame)]
    assert refused and refused[0].stream_id == late and refused[0].error_code == ErrorCodes.REFUSED_STREAM
    assert not peer.transport.closing
    peer.transport.out.clear()
    peer.service.release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    written = frames(bytes(peer.transport.out))
    assert [type(f).__name__ for f in written] == ["HeadersFrame", "DataFrame", "HeadersFrame", "GoAwayFrame"]
    assert written[2].stream_id == running and "END_STREAM" in written[2].flags
    assert peer.transport.closing


async def test_too_many_idle_pings_end_the_connection() -> None:
    peer = Peer(OPTIONS)
    for n in range(4):
        peer.client.ping(b"%08d" % n)
        peer.exchange()
    terminated = [e for e in peer.events if isinstance(e, ConnectionTerminated)]
    assert terminated and terminated[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert terminated[0].additional_data == b"too_many_pings"


@pytest.mark.parametrize("method", ["Echo", "Stream"])
async def test_connection_lost_cancels_calls(method: str) -> None:
    peer = Peer(OPTIONS)
    sid = peer.start("Slow" if method == "Echo" else method)
    if method == "Echo":
        peer.send(sid, b"x")
    await settle(peer)
    assert peer.server._calls
    peer.server.connection_lost(None)
    await settle(peer)
    assert not peer.server._calls


async def test_new_streams_are_refused_while_answers_wait_for_the_client() -> None:
    peer = Peer(H2Options(receive_limit=1 << 20, send_limit=1 << 20, outbox_limit=10_000), window=100)
    blocked = peer.call("Echo", b"x" * 50_000)
    for _ in range(5):
        await asyncio.sleep(0)
        peer.exchange(acknowledge=False)
    assert peer.server._outbox.pending > 10_000
    refused = peer.call("Echo", b"y")
    peer.exchange(acknowledge=False)
    assert any(isinstance(e, StreamReset) and e.stream_id == refused for e in peer.events)
    assert [e.error_code for e in peer.events if isinstance(e, StreamReset)] == [ErrorCodes.REFUSED_STREAM]
    peer.client.increment_flow_control_window(100_000, blocked)
    peer.client.increment_flow_control_window(100_000)
    await settle(peer)
    assert peer.status(blocked)[b"grpc-status"] == b"0" and len(peer.body(blocked)) == 50_005
    accepted = peer.call("Echo", b"z")
    await settle(peer)
    assert peer.status(accepted)[b"grpc-status"] == b"0"


async def test_a_large_frame_in_the_same_read_as_the_settings_ack() -> None:
    # The client's first read of the server's SETTINGS lets it send 1 MiB frames at once; its ACK and
    # such a frame then reach the server together, before h2 would have taken the new size.
    service = FakeService(FakeServer())
    transport = FakeTransport()
    server = GrpcConnection(service, OPTIONS, set())  # type: ignore[arg-type]
    transport.protocol = server
    server.connection_made(transport)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.receive_data(bytes(transport.out))
    transport.out.clear()
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, [
        (":method", "POST"), (":scheme", "http"), (":path", PREFIX + "Echo"), (":authority", "x"),
        ("content-type", "application/grpc"),
    ])  # fmt: skip
    payload = b"x" * 200_000
    client.send_data(stream_id, b"\0" + len(payload).to_bytes(4, "big") + payload, end_stream=True)
    server.data_received(client.data_to_send())
    for _ in range(3):
        await asyncio.sleep(0)
    events = client.receive_data(bytes(transport.out))
    assert not any(isinstance(e, ConnectionTerminated) for e in events)
    assert any(isinstance(e, ResponseReceived) for e in events)
