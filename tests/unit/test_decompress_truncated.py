"""A compressed request body must be whole: a stream that ends early is refused, not read as far as it
goes."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest

from modelport.errors import InvalidInput
from modelport.frontends.http.body import decompress

PAYLOAD = b'{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}' * 8


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(wbits=-15)
    return deflater.compress(data) + deflater.flush()


CODECS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", _raw_deflate),
    ("gzip", zlib.compress),  # gzip and zlib framing are told apart by their headers, as in Triton
]


@pytest.mark.parametrize(("encoding", "compress"), CODECS)
def test_a_whole_stream_inflates(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    assert decompress(compress(PAYLOAD), encoding, 1 << 20) == PAYLOAD


@pytest.mark.parametrize(("encoding", "compress"), CODECS)
@pytest.mark.parametrize("missing", [1, 4, 9])
def test_a_truncated_stream_is_refused(
    encoding: str, compress: Callable[[bytes], bytes], missing: int
) -> None:
    body = compress(PAYLOAD)[:-missing]
    with pytest.raises(InvalidInput, match=f"failed to decompress the {encoding} request body"):
        decompress(body, encoding, 1 << 20)


def test_the_message_says_the_stream_was_cut_short() -> None:
    with pytest.raises(InvalidInput) as raised:
        decompress(gzip.compress(PAYLOAD)[:-4], "gzip", 1 << 20)
    assert (
        raised.value.message == "failed to decompress the gzip request body: the compressed data is truncated"
    )
