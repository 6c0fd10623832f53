"""The h2 gRPC stack's wire formats: message framing and limits, request compression, the header values
gRPC defines (grpc-timeout, grpc-message, binary metadata) and the client-PING policy."""

from __future__ import annotations

import gzip
import zlib

import pytest

from modelport.frontends.grpc.h2.headers import (
    Metadatum,
    parse_request,
    percent_encoded,
    status_headers,
    timeout_seconds,
    trailers_only,
)
from modelport.frontends.grpc.h2.keepalive import PingPolicy
from modelport.frontends.grpc.h2.messages import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    UNIMPLEMENTED,
    MessageReader,
    WireError,
    encoding_bits,
    framed,
)
from modelport.frontends.grpc.h2.options import H2Options

LIMIT = 1000


def message(payload: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(payload).to_bytes(4, "big") + payload


def reader(encoding: bytes | None = None) -> MessageReader:
    return MessageReader(LIMIT, encoding_bits(encoding))


def wire_error(call: object) -> WireError:
    with pytest.raises(WireError) as info:
        call()  # type: ignore[operator]
    return info.value


# --- framing ---------------------------------------------------------------------------------------
def test_one_frame_one_message() -> None:
    assert [bytes(m) for m in reader().feed(message(b"hello"))] == [b"hello"]
    assert framed(b"hello") == message(b"hello")


def test_messages_split_anywhere() -> None:
    stream = message(b"first") + message(b"") + message(b"x" * 300)
    for size in (1, 2, 4, 5, 7, 64):
        r = reader()
        got = []
        for start in range(0, len(stream), size):
            got += [bytes(m) for m in r.feed(stream[start : start + size])]
        assert got == [b"first", b"", b"x" * 300], size
        assert not r.partial


def test_partial_message_is_reported() -> None:
    r = reader()
    assert r.feed(message(b"hello")[:3]) == []
    assert r.partial
    assert r.feed(message(b"hello")[3:-1]) == []
    assert r.partial
    assert [bytes(m) for m in r.feed(b"o")] == [b"hello"]
    assert not r.partial


def test_over_the_limit_from_the_prefix_alone() -> None:
    error = wire_error(lambda: reader().feed(message(b"x" * 2000)[:5]))
    assert (error.code, error.message) == (
        RESOURCE_EXHAUSTED,
        "SERVER: Received message larger than max (2000 vs. 1000)",
    )


def test_compressed_flag_without_encoding() -> None:
    error = wire_error(lambda: reader().feed(message(b"hello", flag=1)))
    assert (error.code, error.message) == (INTERNAL, "Compression bit set but no encoding configured")
    assert wire_error(lambda: reader().feed(message(b"hello", flag=2))).code == INTERNAL


# --- compression -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("encoding", "compress"), [(b"gzip", gzip.compress), (b"deflate", zlib.compress)])
def test_compressed_messages(encoding: bytes, compress: object) -> None:
    r = reader(encoding)
    body = compress(b"payload " * 100)  # type: ignore[operator]
    got = r.feed(message(body, flag=1) + message(b"plain"))
    assert [bytes(m) for m in got] == [b"payload " * 100, b"plain"]


def test_inflating_past_the_limit() -> None:
    error = wire_error(lambda: reader(b"gzip").feed(message(gzip.compress(b"\0" * 5000), flag=1)))
    assert (error.code, error.message) == (RESOURCE_EXHAUSTED, "Decompressed message larger than max")


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"hello")[:-6]])
def test_corrupt_or_truncated_compression(body: bytes) -> None:
    error = wire_error(lambda: reader(b"gzip").feed(message(body, flag=1)))
    assert (error.code, error.message) == (INTERNAL, "Decompression failed due to zlib error")


def test_unknown_encoding() -> None:
    error = wire_error(lambda: encoding_bits(b"snappy"))
    assert (error.code, error.message) == (UNIMPLEMENTED, "Compression algorithm 'snappy' is disabled.")
    assert encoding_bits(b"identity") == encoding_bits(None) == 0


# --- headers ---------------------------------------------------------------------------------------
def test_request_headers_sorted_into_a_head() -> None:
    head = parse_request([
        (b":method", b"POST"), (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
        (b":authority", b"x"), (b"te", b"trailers"), (b"content-type", b"application/grpc"),
        (b"grpc-timeout", b"5S"), (b"grpc-encoding", b"gzip"), (b"grpc-accept-encoding", b"gzip"),
        (b"user-agent", b"grpc-c/1"), (b"Triton_GRPC_Error", b"true"), (b"trace-bin", b"AAEC"),
        (b"name", "caf\u00e9".encode()),
    ])  # fmt: skip
    assert (head.method, head.path, head.content_type) == (
        b"POST",
        b"/inference.GRPCInferenceService/ModelInfer",
        b"application/grpc",
    )
    assert (head.timeout, head.encoding) == (b"5S", b"gzip")
    assert head.metadata == (
        Metadatum("user-agent", "grpc-c/1"),
        Metadatum("triton_grpc_error", "true"),
        Metadatum("trace-bin", b"\x00\x01\x02"),
        Metadatum("name", "caf\u00e9"),
    )
    key, value = head.metadata[0]  # unpacks like grpc's metadata entries
    assert (key, value) == ("user-agent", "grpc-c/1")


def test_binary_metadata_must_be_base64() -> None:
    error = wire_error(lambda: parse_request([(b"x-bin", b"!!!")]))
    assert error.code == INTERNAL
    assert error.message == "Error parsing 'x-bin' metadata: illegal base64 encoding"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1H", 3600), (b"2M", 120), (b"3S", 3), (b"250m", 0.25), (b"7u", 7e-6), (b"9n", 9e-9)],
)
def test_timeouts(value: bytes, seconds: float) -> None:
    assert timeout_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"10", b"10x", b"123456789S", b"-1S", b"1.5S"])
def test_bad_timeouts(value: bytes) -> None:
    error = wire_error(lambda: timeout_seconds(value))
    assert (error.code, error.message) == (INTERNAL, "Error parsing 'grpc-timeout' metadata")


def test_grpc_message_is_percent_encoded() -> None:
    assert percent_encoded("plain text: ok") == b"plain text: ok"
    assert percent_encoded("100% caf\u00e9\n") == b"100%25 caf%C3%A9%0A"


def test_status_headers() -> None:
    assert status_headers(0, "") == [(b"grpc-status", b"0")]
    assert status_headers(5, "not found", [("k", "v"), ("k-bin", b"\xff")]) == [
        (b"grpc-status", b"5"),
        (b"grpc-message", b"not found"),
        (b"k", b"v"),
        (b"k-bin", b"/w"),
    ]
    only = trailers_only(14, "busy")
    assert only[0] == (b":status", b"200") and only[-1] == (b"grpc-message", b"busy")


# --- client PINGs ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pings_while_idle_earn_strikes() -> None:
    clock = Clock()
    policy = PingPolicy(H2Options(receive_limit=1, send_limit=1), clock)
    assert [policy.received_ping(True, 0) for _ in range(4)] == [False, False, False, True]


def test_pings_during_calls_and_forgiveness() -> None:
    clock = Clock()
    policy = PingPolicy(H2Options(receive_limit=1, send_limit=1, min_ping_interval=10), clock)
    for _ in range(10):  # one every 10 s is allowed while calls are in flight
        clock.now += 10
        assert not policy.received_ping(False, 0)
    for writes in range(1, 11):  # too soon, each a strike, but the server wrote in between
        clock.now += 1
        assert not policy.received_ping(False, writes)
    # Without writes the strikes add up: the last ping above was the first, this makes three.
    assert [policy.received_ping(False, 10) for _ in range(2)] == [False, True]


def test_permitted_idle_pings_and_no_limit() -> None:
    clock = Clock()
    permitted = PingPolicy(
        H2Options(receive_limit=1, send_limit=1, permit_without_calls=True, min_ping_interval=1), clock
    )
    unlimited = PingPolicy(H2Options(receive_limit=1, send_limit=1, max_ping_strikes=0), clock)
    for _ in range(5):
        clock.now += 1
        assert not permitted.received_ping(True, 0)
        assert not unlimited.received_ping(True, 0)
