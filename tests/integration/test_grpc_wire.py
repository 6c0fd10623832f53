"""The h2 gRPC stack (--grpc-stack h2) on the wire, through a bare HTTP/2 client (the h2 library over a
socket): what grpc clients never send or never show, answered as grpc-core answers it; the deadline
enforced by the server itself; keepalive PINGs, the client-PING policy, connection age, and GOAWAY
when the server stops."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from tritonclient.grpc import service_pb2

from integration.test_grpc_calls import build_repository
from support.server import HOST, ServerProcess, running_server

SERVICE = "/inference.GRPCInferenceService/"
H2 = ("--grpc-stack", "h2")


@dataclass
class Answer:
    """What came back on one stream."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    reset: int | None = None
    ended: bool = False

    @property
    def status(self) -> tuple[int, str]:
        fields = self.trailers or self.headers
        return int(fields[b"grpc-status"]), fields.get(b"grpc-message", b"").decode()


class RawClient:
    """An HTTP/2 client connection that sends whatever it is told to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.answers: dict[int, Answer] = {}
        self.events: list[Any] = []
        self.flush()

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, method: str, headers: tuple[tuple[str, str], ...] = ()) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", SERVICE + method), (":authority", HOST),
            ("te", "trailers"), ("content-type", "application/grpc"), *headers,
        ])  # fmt: skip
        self.answers[stream_id] = Answer()
        return stream_id

    def call(
        self, method: str, message: bytes, headers: tuple[tuple[str, str], ...] = (), flag: int = 0
    ) -> int:
        stream_id = self.start(method, headers)
        framed = bytes((flag,)) + len(message).to_bytes(4, "big") + message
        self.h2.send_data(stream_id, framed, end_stream=True)
        self.flush()
        return stream_id

    def wait(self, done: Any, timeout: float = 10.0) -> None:
        """Read until done() is true."""
        deadline = time.monotonic() + timeout
        while not done():
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError("timed out waiting for the server") from None
            if not data:
                raise AssertionError("the server closed the connection")
            for event in self.h2.receive_data(data):
                self.events.append(event)
                self.record(event)
            self.flush()

    def record(self, event: Any) -> None:
        answer = self.answers.get(getattr(event, "stream_id", 0))
        if answer is None:
            return
        if isinstance(event, ResponseReceived):
            answer.headers = dict(event.headers)
        elif isinstance(event, TrailersReceived):
            answer.trailers = dict(event.headers)
        elif isinstance(event, DataReceived):
            answer.data += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded):
            answer.ended = True
        elif isinstance(event, StreamReset):
            answer.reset = event.error_code

    def answer(self, stream_id: int, timeout: float = 10.0) -> Answer:
        self.wait(lambda: self.answers[stream_id].ended or self.answers[stream_id].reset is not None, timeout)
        return self.answers[stream_id]

    def terminated(self) -> ConnectionTerminated | None:
        return next((e for e in self.events if isinstance(e, ConnectionTerminated)), None)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("grpc_wire_repo"))


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("grpc_wire_logs") / "server.log"
    with running_server(repo, log, (*H2, "--grpc-max-receive-message-size=1048576"), grpc=True) as proc:
        yield proc


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawClient]:
    client = RawClient(server.grpc_port)
    yield client
    client.close()


def sleepy_request(seconds: float) -> bytes:
    request = service_pb2.ModelInferRequest(model_name="sleepy")
    request.inputs.add(name="IN", datatype="FP32", shape=[1])
    request.raw_input_contents.append(np.array([seconds], np.float32).tobytes())
    return request.SerializeToString()


LIVE = service_pb2.ServerLiveRequest().SerializeToString()


def test_a_plain_call(raw: RawClient) -> None:
    answer = raw.answer(raw.call("ServerLive", LIVE))
    assert answer.headers[b":status"] == b"200"
    assert answer.headers[b"content-type"] == b"application/grpc"
    assert answer.status == (0, "")
    assert service_pb2.ServerLiveResponse.FromString(answer.data[5:]).live


def test_the_server_enforces_the_deadline(raw: RawClient) -> None:
    started = time.monotonic()
    answer = raw.answer(raw.call("ModelInfer", sleepy_request(2.0), (("grpc-timeout", "300m"),)))
    assert answer.status == (4, "Deadline Exceeded")
    assert 0.25 < time.monotonic() - started < 1.5


NOT_BASE64 = "Error parsing 'x-bin' metadata: illegal base64 encoding"
NOT_PROTOBUF = "failed to parse the request protobuf message: Error parsing message"
BOMB = gzip.compress(b"\0" * (2 << 20))


@pytest.mark.parametrize(
    ("headers", "flag", "message", "status"),
    [
        ((("grpc-encoding", "gzip"),), 1, gzip.compress(LIVE + b"\x08\x00"), (0, "")),
        ((("grpc-encoding", "snappy"),), 1, LIVE, (12, "Compression algorithm 'snappy' is disabled.")),
        ((), 1, LIVE, (13, "Compression bit set but no encoding configured")),
        ((("grpc-encoding", "gzip"),), 1, b"garbage", (13, "Decompression failed due to zlib error")),
        ((("grpc-encoding", "gzip"),), 1, BOMB, (8, "Decompressed message larger than max")),
        ((("grpc-timeout", "soon"),), 0, LIVE, (13, "Error parsing 'grpc-timeout' metadata")),
        ((("x-bin", "not base64!"),), 0, LIVE, (13, NOT_BASE64)),
        ((), 0, b"\x0a\xff\xff\xff\xff\x0f", (3, NOT_PROTOBUF)),
    ],
)  # fmt: skip
def test_request_errors(
    raw: RawClient, headers: tuple[tuple[str, str], ...], flag: int, message: bytes, status: tuple[int, str]
) -> None:
    answer = raw.answer(raw.call("ServerLive", message, headers, flag))
    code, text = answer.status
    assert (code, text[: len(status[1])]) == status
    if code == 12:
        assert answer.headers[b"grpc-accept-encoding"] == b"identity, deflate, gzip"


def test_unknown_method(raw: RawClient) -> None:
    assert raw.answer(raw.call("NoSuchMethod", b"")).status == (12, "Method not found!")


def test_requests_without_a_whole_message(raw: RawClient) -> None:
    empty = raw.start("ServerLive")
    raw.h2.end_stream(empty)
    cut = raw.start("ServerLive")
    raw.h2.send_data(cut, b"\0\0\0\0\x09abc", end_stream=True)
    raw.flush()
    assert raw.answer(empty).status == (13, "Half-closed without a request")
    assert raw.answer(cut).status == (13, "Encountered end-of-stream mid-frame")


def test_an_oversize_request_is_refused_from_its_prefix(raw: RawClient) -> None:
    stream_id = raw.start("ModelInfer")
    raw.h2.send_data(stream_id, b"\0" + (64 << 20).to_bytes(4, "big") + b"x" * 1000)
    raw.flush()
    answer = raw.answer(stream_id)
    assert answer.status == (8, f"SERVER: Received message larger than max ({64 << 20} vs. 1048576)")
    raw.wait(lambda: answer.reset is not None)  # and the client is told to stop sending
    assert answer.reset == ErrorCodes.NO_ERROR
    assert raw.answer(raw.call("ServerLive", LIVE)).status == (0, "")


def test_error_messages_are_percent_encoded(raw: RawClient) -> None:
    request = service_pb2.ModelMetadataRequest(name="mod\u00e8le 100%").SerializeToString()
    answer = raw.answer(raw.call("ModelMetadata", request))
    assert answer.status[0] == 5
    assert "mod%C3%A8le 100%25" in answer.status[1]


@pytest.fixture(scope="module")
def policed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("grpc_wire_policed") / "server.log"
    args = (*H2, "--grpc-keepalive-time=300", "--grpc-keepalive-permit-without-calls")
    with running_server(repo, log, args, grpc=True) as proc:
        yield proc


def test_keepalive_pings_and_too_many_client_pings(policed: ServerProcess) -> None:
    client = RawClient(policed.grpc_port)
    try:
        client.wait(lambda: any(isinstance(e, PingReceived) for e in client.events), timeout=5)
        for n in range(4):  # the first is welcome, then strikes: the third is one too many
            client.h2.ping(b"%08d" % n)
        client.flush()
        client.wait(lambda: client.terminated() is not None)
        goaway = client.terminated()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert goaway.additional_data == b"too_many_pings"
    finally:
        client.close()


def test_connections_past_their_age_get_goaway(repo: Path, tmp_path: Path) -> None:
    args = (*H2, "--grpc-max-connection-age=300", "--grpc-max-connection-age-grace=2000")
    with running_server(repo, tmp_path / "server.log", args, grpc=True) as proc:
        client = RawClient(proc.grpc_port)
        try:
            running = client.call("ModelInfer", sleepy_request(0.6))
            client.wait(lambda: client.terminated() is not None, timeout=5)
            goaway = client.terminated()
            assert goaway is not None and goaway.error_code == ErrorCodes.NO_ERROR
            assert goaway.last_stream_id == running
        finally:
            client.close()


def test_goaway_when_the_server_stops(repo: Path, tmp_path: Path) -> None:
    proc = ServerProcess(repo, tmp_path / "server.log", extra_args=H2, grpc=True)
    proc.start()
    try:
        client = RawClient(proc.grpc_port)
        running = client.call("ModelInfer", sleepy_request(0.5))
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        answer = client.answer(running)
        assert answer.status == (0, "")
        client.wait(lambda: client.terminated() is not None)
        goaway = client.terminated()
        assert goaway is not None and goaway.error_code == ErrorCodes.NO_ERROR
        client.close()
        assert proc.stop() == 0
        assert not proc.leak_reports()
    finally:
        proc.kill()
