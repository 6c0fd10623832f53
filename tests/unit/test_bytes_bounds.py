"""BYTES tensors are bounded by their shape before they are decoded: a buffer holding more elements
than the shape says is refused at the first extra element, with Triton's messages."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from modelport.codecs import json_v2
from modelport.errors import InvalidInput
from modelport.tensor.bytes_codec import decode_bytes, encode_bytes


def _reference_encoding(items: list[bytes]) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in items)


def _objects(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


class TestBytesElementCount:
    def test_more_elements_than_the_shape_stop_at_the_first_extra_one(self) -> None:
        blob = bytes(48 << 20)  # 12 Mi zero-length elements
        started = time.perf_counter()
        with pytest.raises(InvalidInput) as info:
            decode_bytes(blob, 1, "inference input 'IN' for model 'm'")
        elapsed = time.perf_counter() - started
        assert info.value.message == (
            "unexpected number of string elements 2 for inference input 'IN' for model 'm', expecting 1"
        )
        assert elapsed < 1.0  # the 12 Mi elements are not walked (walking them takes seconds)

    def test_fewer_elements_than_the_shape(self) -> None:
        with pytest.raises(InvalidInput, match="expected 3 string elements for the BYTES tensor, got 2"):
            decode_bytes(_reference_encoding([b"a", b"bc"]), 3)

    def test_a_shape_far_beyond_the_buffer_allocates_nothing_for_it(self) -> None:
        with pytest.raises(InvalidInput, match=f"expected {1 << 40} string elements .*, got 2"):
            decode_bytes(_reference_encoding([b"a", b"bc"]), 1 << 40)

    def test_zero_elements(self) -> None:
        assert decode_bytes(b"", 0).shape == (0,)
        with pytest.raises(InvalidInput, match=r"unexpected number of string elements 1 .* expecting 0"):
            decode_bytes(b"\x00\x00\x00\x00", 0)

    @pytest.mark.parametrize("length", [0, 1, 3, 8])
    def test_elements_of_one_length(self, length: int) -> None:
        items = [bytes([i % 256]) * length for i in range(1000)]
        items[7] = b"\x00" * length  # NUL bytes are data, trailing ones included
        decoded = decode_bytes(_reference_encoding(items), 1000)
        assert decoded.dtype == object and decoded.shape == (1000,)
        assert all(type(v) is bytes for v in decoded)
        assert list(decoded) == items

    def test_one_length_prefix_that_lies_falls_back_to_the_walk(self) -> None:
        # Same total size as four 1-byte elements, but the third prefix says 0 and the fourth 2.
        blob = _reference_encoding([b"a", b"b", b"", b"cd"])
        assert list(decode_bytes(blob, 4)) == [b"a", b"b", b"", b"cd"]
        with pytest.raises(InvalidInput):
            decode_bytes(blob, 5)

    def test_mixed_lengths_round_trip(self) -> None:
        items = [b"x" * (i % 7) for i in range(5000)]
        blob = _reference_encoding(items)
        assert list(decode_bytes(blob, 5000)) == items
        assert list(decode_bytes(blob)) == items

    @pytest.mark.parametrize(
        "items",
        [
            [b"", b"", b""],
            [b"ab", b"\x00\x00", b"cd"],
            [b"a", b"", b"long element", b"\xff"],
        ],
    )
    def test_encoding_matches_the_wire_format(self, items: list[bytes]) -> None:
        assert encode_bytes(_objects(items)) == _reference_encoding(items)
        assert encode_bytes(_objects(items).reshape(len(items), 1)) == _reference_encoding(items)

    def test_binary_bytes_more_elements_than_the_shape(self) -> None:
        blob = bytes(4 * 1000)
        params = {"binary_data_size": len(blob)}
        doc = {"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1, 1], "parameters": params}]}
        header = json.dumps(doc).encode()
        with pytest.raises(InvalidInput) as info:
            json_v2.decode_request(header + blob, len(header), "m")
        assert info.value.message == (
            "unexpected number of string elements 2 for inference input 'IN' for model 'm', expecting 1"
        )
