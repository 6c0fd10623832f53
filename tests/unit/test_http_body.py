"""HTTP body helpers (reading under a cap, compression both ways) and the status-code table; no sockets."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from modelport.errors import ErrorCode, InvalidInput, Unsupported
from modelport.frontends.http.body import (
    BodyTooLarge,
    ClientDisconnected,
    choose_encoding,
    compress,
    decompress,
    receive_body,
)
from modelport.frontends.status import grpc_status_name, http_status

PAYLOAD = b'{"inputs": []}' * 10


class TestDecompress:
    @pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
    def test_identity(self, encoding: str | None) -> None:
        assert decompress(PAYLOAD, encoding, 1 << 20) == PAYLOAD

    def test_gzip(self) -> None:
        assert decompress(gzip.compress(PAYLOAD), "gzip", 1 << 20) == PAYLOAD

    def test_deflate_as_tritonclient_sends_it_is_zlib_wrapped(self) -> None:
        assert decompress(zlib.compress(PAYLOAD), "deflate", 1 << 20) == PAYLOAD

    def test_raw_deflate_is_accepted(self) -> None:
        raw = zlib.compressobj(wbits=-15)
        body = raw.compress(PAYLOAD) + raw.flush()
        assert decompress(body, "deflate", 1 << 20) == PAYLOAD

    def test_framing_is_auto_detected(self) -> None:
        assert decompress(gzip.compress(PAYLOAD), "deflate", 1 << 20) == PAYLOAD

    @pytest.mark.parametrize("encoding", ["br", "zstd", "compress"])
    def test_unsupported_encoding(self, encoding: str) -> None:
        with pytest.raises(Unsupported) as info:
            decompress(PAYLOAD, encoding, 1 << 20)
        assert info.value.message == "Unsupported compression type"
        assert http_status(info.value.code) == 501

    def test_corrupt_body(self) -> None:
        with pytest.raises(InvalidInput, match="failed to decompress the gzip request body"):
            decompress(b"definitely not gzip", "gzip", 1 << 20)

    def test_decompressed_size_is_limited(self) -> None:
        bomb = gzip.compress(b"\0" * 100_000)
        with pytest.raises(BodyTooLarge, match="decompressed request body exceeds the limit of 1000 bytes"):
            decompress(bomb, "gzip", 1000)


class TestChooseEncoding:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, None),
            ("", None),
            ("gzip", "gzip"),
            ("deflate", "deflate"),
            ("identity", None),
            ("gzip, deflate", "gzip"),
            ("deflate;q=0.9, gzip;q=0.5", "deflate"),
            ("gzip;q=0.2, identity;q=0.8", None),
            ("br", None),
            ("GZIP", "gzip"),
            ("gzip;q=0", None),
            ("gzip;q=bad, deflate", "deflate"),
        ],
    )
    def test_preference(self, header: str | None, expected: str | None) -> None:
        assert choose_encoding(header) == expected

    @pytest.mark.parametrize("encoding", ["gzip", "deflate"])
    def test_compress_round_trip(self, encoding: str) -> None:
        assert decompress(compress(PAYLOAD, encoding), encoding, 1 << 20) == PAYLOAD


@pytest.mark.parametrize(
    ("code", "status", "grpc"),
    [
        (ErrorCode.INVALID_ARG, 400, "INVALID_ARGUMENT"),
        (ErrorCode.NOT_FOUND, 404, "NOT_FOUND"),
        (ErrorCode.UNAVAILABLE, 503, "UNAVAILABLE"),
        (ErrorCode.UNSUPPORTED, 501, "UNIMPLEMENTED"),
        (ErrorCode.INTERNAL, 500, "INTERNAL"),
    ],
)
def test_status_table(code: ErrorCode, status: int, grpc: str) -> None:
    assert http_status(code) == status
    assert grpc_status_name(code) == grpc


@pytest.mark.parametrize("code", [ErrorCode.UNKNOWN, ErrorCode.ALREADY_EXISTS, ErrorCode.CANCELLED])
def test_other_codes_are_400_as_in_triton(code: ErrorCode) -> None:
    assert http_status(code) == 400


def test_every_error_code_has_a_status() -> None:
    for code in ErrorCode:
        assert isinstance(http_status(code), int)
        assert grpc_status_name(code)


# --- receiving the body from ASGI messages ------------------------------------------------------
def _messages(*chunks: bytes, disconnect: bool = False) -> Any:
    """An ASGI receive callable handing out `chunks` as http.request messages."""
    queue: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        queue.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


class TestReceiveBody:
    async def test_chunks_land_in_one_buffer_of_the_declared_size(self) -> None:
        body = await receive_body(_messages(b"abc", b"", b"defg"), "7", limit=100)
        assert isinstance(body, bytearray) and body == b"abcdefg"

    async def test_single_message_is_returned_as_is(self) -> None:
        assert await receive_body(_messages(b"whole"), "5", limit=100) == b"whole"

    async def test_declared_size_over_the_limit_is_refused_before_reading(self) -> None:
        async def never() -> dict[str, Any]:
            raise AssertionError("the body must not be read")

        with pytest.raises(BodyTooLarge, match="at least 101 bytes exceeds the limit of 100"):
            await receive_body(never, "101", limit=100)

    async def test_chunked_body_is_refused_once_it_passes_the_limit(self) -> None:
        with pytest.raises(BodyTooLarge):
            await receive_body(_messages(b"x" * 60, b"y" * 60, b"z"), None, limit=100)

    async def test_chunked_body_under_the_limit_is_joined(self) -> None:
        assert await receive_body(_messages(b"ab", b"cd"), None, limit=100) == b"abcd"

    async def test_more_than_declared_is_invalid(self) -> None:
        with pytest.raises(InvalidInput, match="longer than its Content-Length"):
            await receive_body(_messages(b"abc", b"def"), "4", limit=100)

    async def test_client_leaving_mid_body(self) -> None:
        with pytest.raises(ClientDisconnected):
            await receive_body(_messages(b"abc", disconnect=True), "10", limit=100)
