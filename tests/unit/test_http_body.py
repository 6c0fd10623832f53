"""HTTP body helpers (compression both ways) and the status-code table; no sockets."""

from __future__ import annotations

import gzip
import zlib

import pytest

from modelport.errors import ErrorCode, InvalidInput, Unsupported
from modelport.frontends.http.body import BodyTooLarge, choose_encoding, compress, decompress
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
