"""The frontend workers' link: frames survive any split into reads, large bodies land in their own
buffer, limits close the link, answers find their calls, and a cancelled call tells the engine.
Also the engine's HTTP bridge, the workers' options and the --frontend-workers flag.

The protocols are driven directly (get_buffer / buffer_updated, a recording transport): no sockets.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.config.settings import Restriction, ServerSettings
from modelport.frontends.workers.bridge import HttpBridge
from modelport.frontends.workers.engine import FOLDER_PREFIX, remove_stale_folders
from modelport.frontends.workers.link import (
    DIRECT_BYTES,
    HEADER,
    SCRATCH_BYTES,
    FrameProtocol,
    Kind,
    LinkClient,
    LinkError,
)
from modelport.frontends.workers.options import WORKER_SETTINGS, WorkerOptions, worker_count

Frame = tuple[int, int, Any, Any]


class RecordingTransport(asyncio.Transport):
    """Keeps what is written; close() ends the connection like a real transport."""

    def __init__(self, protocol: FrameProtocol | None = None) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False
        self.protocol = protocol

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.protocol is not None:
                self.protocol.connection_lost(None)


def frames_of(*frames: tuple[int, int, Any, bytes]) -> bytes:
    """The bytes a sending FrameProtocol writes for `frames`."""
    sender = FrameProtocol(lambda *_: None, max_body=1 << 30)
    transport = RecordingTransport()
    sender.connection_made(transport)
    for request_id, kind, head, body in frames:
        sender.send(request_id, kind, head, body)
    sender.flush()
    return bytes(transport.written)


def receiver(max_body: int = 1 << 30) -> tuple[FrameProtocol, list[Frame], RecordingTransport]:
    got: list[Frame] = []
    protocol = FrameProtocol(lambda *frame: got.append(frame), max_body=max_body)
    transport = RecordingTransport(protocol)
    protocol.connection_made(transport)
    return protocol, got, transport


def feed(protocol: FrameProtocol, data: bytes, chunk: int) -> None:
    """Deliver `data` as reads of at most `chunk` bytes, into the buffers the protocol hands out."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(-1)
        n = min(chunk, len(buffer), len(view))
        assert n > 0
        buffer[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
async def test_frames_survive_any_split(chunk: int) -> None:
    big = bytes(range(256)) * (DIRECT_BYTES // 256 + 3)  # read straight into its own buffer
    sent = [
        (1, Kind.HTTP, ("GET", "/v2", [(b"a", b"b")]), b""),
        (2, Kind.GRPC_INFER, (("key", "value"),), b"small body"),
        (3, Kind.HTTP, ("POST", "/v2/models/m/infer", []), big),
        (4, Kind.ANSWER, (200, []), b"x" * (DIRECT_BYTES - 1)),
        (4294967295, Kind.CANCEL, None, b""),
    ]
    protocol, got, transport = receiver()
    feed(protocol, frames_of(*sent), chunk)
    assert [(r, k, h, bytes(b)) for r, k, h, b in got] == sent
    assert isinstance(got[2][3], bytearray)  # a large body is its own buffer, as the decoders take it
    assert not transport.closing


async def test_many_small_frames_in_one_read_and_a_head_larger_than_the_scratch_buffer() -> None:
    huge_head = ("x" * (SCRATCH_BYTES + 1000),)
    sent = [(i, Kind.HTTP, (i,), b"%d" % i) for i in range(1, 2000)]
    sent.insert(1000, (5000, Kind.HTTP, huge_head, b"after a huge head"))
    protocol, got, _ = receiver()
    feed(protocol, frames_of(*sent), 1 << 20)
    assert [(r, k, h, bytes(b)) for r, k, h, b in got] == sent


async def test_a_body_over_the_limit_closes_the_link() -> None:
    protocol, got, transport = receiver(max_body=100)
    feed(protocol, frames_of((1, Kind.HTTP, (), b"y" * 101)), 1 << 20)
    assert got == [] and transport.closing
    assert protocol.lost.done()


async def test_a_head_over_the_limit_closes_the_link() -> None:
    protocol, got, transport = receiver()
    feed(protocol, HEADER.pack(1, Kind.HTTP, 64 * 1024 * 1024, 0), 1 << 20)
    assert got == [] and transport.closing


def client() -> tuple[LinkClient, RecordingTransport]:
    link = LinkClient(max_body=1 << 30)
    transport = RecordingTransport(link)
    link.connection_made(transport)
    return link, transport


def sent_frames(transport: RecordingTransport) -> list[Frame]:
    assert transport.protocol is not None
    transport.protocol.flush()
    protocol, got, _ = receiver()
    feed(protocol, bytes(transport.written), 1 << 20)
    transport.written.clear()
    return got


def answer(link: LinkClient, request_id: int, head: Any, body: bytes) -> None:
    feed(link, frames_of((request_id, Kind.ANSWER, head, body)), 1 << 20)


async def test_answers_find_their_calls_in_any_order() -> None:
    link, transport = client()
    first = asyncio.ensure_future(link.call(Kind.HTTP, ("first",), b"1"))
    second = asyncio.ensure_future(link.call(Kind.GRPC_INFER, ("second",), b"2"))
    await asyncio.sleep(0)
    (id1, kind1, head1, _), (id2, kind2, head2, _) = sent_frames(transport)
    assert (kind1, head1, kind2, head2) == (Kind.HTTP, ("first",), Kind.GRPC_INFER, ("second",))
    answer(link, id2, "for second", b"B")
    answer(link, id1, "for first", b"A")
    assert await first == ("for first", b"A")
    assert await second == ("for second", b"B")


async def test_a_cancelled_call_tells_the_engine() -> None:
    link, transport = client()
    call = asyncio.ensure_future(link.call(Kind.HTTP, (), b""))
    await asyncio.sleep(0)
    [(request_id, _, _, _)] = sent_frames(transport)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert [(r, k) for r, k, _, _ in sent_frames(transport)] == [(request_id, Kind.CANCEL)]
    answer(link, request_id, "late", b"")  # a late answer is dropped


async def test_calls_fail_when_the_link_drops() -> None:
    link, transport = client()
    call = asyncio.ensure_future(link.call(Kind.HTTP, (), b""))
    await asyncio.sleep(0)
    transport.close()
    with pytest.raises(LinkError):
        await call
    with pytest.raises(LinkError):
        await link.call(Kind.HTTP, (), b"")


def test_worker_options_round_trip_without_the_restriction_secrets() -> None:
    settings = ServerSettings(
        http_port=1234,
        grpc_port=2345,
        http_max_input_size=99,
        log_verbose=2,
        http_restricted_apis={"inference": Restriction("k", "secret-value")},
        grpc_restricted_protocols={"inference": Restriction("triton-grpc-protocol-k", "secret-value")},
    )
    options = WorkerOptions(3, 42, "/x/link.sock", "unix:/x/grpc.sock", settings, 0.5)
    text = options.to_json()
    assert "secret-value" not in text
    back = WorkerOptions.from_json(text)
    assert (back.index, back.engine_pid, back.link_path, back.engine_grpc, back.grace_s) == (
        3, 42, "/x/link.sock", "unix:/x/grpc.sock", 0.5,
    )  # fmt: skip
    for name in WORKER_SETTINGS:
        assert getattr(back.settings, name) == getattr(settings, name), name
    assert back.settings.http_restricted_apis == {}


def test_worker_count() -> None:
    assert worker_count("0") == 0
    assert worker_count("3") == 3
    assert 1 <= worker_count("auto") <= 16
    with pytest.raises(ValueError):
        worker_count("-1")
    with pytest.raises(ValueError):
        worker_count("many")


HEAD = (
    "POST",
    "/echo",
    b"/echo",
    b"q=1",
    [(b"x-a", b"1")],
    ("10.0.0.1", 5),
    ("127.0.0.1", 8000),
    "1.1",
    "http",
)


async def test_the_http_bridge_calls_the_app_as_uvicorn_would() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["request"] = await receive()
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-b", b"2")]})
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        await send({"type": "http.response.body", "body": b"llo"})
        seen["after"] = await asyncio.wait_for(receive(), 1)

    (status, headers), body = await HttpBridge(app)(HEAD, bytearray(b"payload"))
    assert (status, headers, body) == (201, [(b"x-b", b"2")], b"hello")
    scope = seen["scope"]
    assert (scope["method"], scope["path"], scope["query_string"], scope["client"]) == (
        "POST", "/echo", b"q=1", ("10.0.0.1", 5),
    )  # fmt: skip
    assert scope["headers"] == [(b"x-a", b"1")]
    assert seen["request"] == {"type": "http.request", "body": bytearray(b"payload"), "more_body": False}
    assert seen["after"] == {"type": "http.disconnect"}


async def test_the_http_bridge_answers_500_for_an_app_that_fails() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    (status, headers), body = await HttpBridge(app)(HEAD, b"")
    assert status == 500 and b"boom" in body
    assert (b"content-length", b"%d" % len(body)) in headers


def serve_settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


def test_the_frontend_workers_flag(tmp_path: Path) -> None:
    assert serve_settings(tmp_path).frontend_workers == 0
    assert serve_settings(tmp_path, "--frontend-workers", "3").frontend_workers == 3
    assert 1 <= serve_settings(tmp_path, "--frontend-workers=auto").frontend_workers <= 16
    with pytest.raises(SystemExit):
        serve_settings(tmp_path, "--frontend-workers", "-2")
    with pytest.raises(SystemExit, match="fixed ports"):
        serve_settings(tmp_path, "--frontend-workers", "2", "--grpc-port", "0")
    assert serve_settings(tmp_path, "--frontend-workers", "2", "--grpc-port", "0", "--allow-grpc=false")


def test_only_dead_engines_folders_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = tmp_path / f"{FOLDER_PREFIX}{ended.pid}-abc"
    live = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / "modelport-override-1-x"
    for folder in (stale, live, other):
        folder.mkdir()
    remove_stale_folders()
    assert (stale.exists(), live.exists(), other.exists()) == (False, True, True)


# ----------------------------------------------------------------------------------------------------
# streamed answers (generate_stream through the workers)


async def test_the_parts_of_a_streamed_answer_reach_their_call_before_its_answer() -> None:
    link, transport = client()
    got: list[tuple[Any, bytes]] = []
    call = asyncio.ensure_future(link.call(Kind.HTTP, (), b"", lambda h, b: got.append((h, bytes(b)))))
    plain = asyncio.ensure_future(link.call(Kind.HTTP, (), b""))
    await asyncio.sleep(0)
    [(streamed_id, _, _, _), (plain_id, _, _, _)] = sent_frames(transport)
    frames = frames_of(
        (streamed_id, Kind.PART, (200, [(b"content-type", b"text/event-stream")]), b"data: 1\n\n"),
        (plain_id, Kind.PART, None, b"dropped: that call takes no parts"),
        (streamed_id, Kind.PART, None, b"data: 2\n\n"),
        (streamed_id, Kind.ANSWER, (200, []), b""),
        (plain_id, Kind.ANSWER, (200, []), b"whole"),
    )
    feed(link, frames, 1 << 20)
    assert await call == ((200, []), b"")
    assert await plain == ((200, []), b"whole")
    assert got == [((200, [(b"content-type", b"text/event-stream")]), b"data: 1\n\n"), (None, b"data: 2\n\n")]
    feed(link, frames_of((streamed_id, Kind.PART, None, b"late")), 1 << 20)  # after the answer: dropped
    assert len(got) == 2


async def test_the_http_bridge_sends_a_body_in_parts_as_the_app_makes_it() -> None:
    parts: list[tuple[Any, bytes]] = []
    made: list[str] = []

    async def part(head: Any, body: Any) -> None:
        parts.append((head, bytes(body)))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-b", b"2")]})
        for event in (b"one", b"two"):
            await send({"type": "http.response.body", "body": event, "more_body": True})
            made.append(f"{event.decode()} sent, {len(parts)} parts out")
        await send({"type": "http.response.body", "body": b""})

    (status, headers), body = await HttpBridge(app)(HEAD, b"", part)
    assert (status, headers, body) == (200, [(b"x-b", b"2")], b"")
    assert parts == [((200, [(b"x-b", b"2")]), b"one"), (None, b"two")]
    assert made == ["one sent, 1 parts out", "two sent, 2 parts out"]  # each part left before the next
