"""BYTES length-prefixed encoding and protocol datatypes."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.tensor import datatype
from modelport.tensor.bytes_codec import as_bytes, decode_bytes, encode_bytes


class TestBytesCodec:
    def test_hello_is_length_prefixed_little_endian(self) -> None:
        assert encode_bytes(np.array([b"hello"], dtype=object)) == b"\x05\x00\x00\x00hello"

    def test_round_trip_with_non_ascii_empty_and_binary(self) -> None:
        items = ["héllo wörld", "", "日本語", b"\x00\xff\x80", "emoji \U0001f600"]
        array = np.empty((5,), dtype=object)
        array[:] = items
        decoded = decode_bytes(encode_bytes(array), 5)
        assert decoded.dtype == object
        assert list(decoded) == [as_bytes(i) for i in items]

    def test_multidimensional_row_major(self) -> None:
        array = np.array([[b"a", b"bb"], [b"ccc", b"dddd"]], dtype=object)
        assert list(decode_bytes(encode_bytes(array))) == [b"a", b"bb", b"ccc", b"dddd"]

    def test_length_prefix_is_a_full_uint32(self) -> None:
        # the length prefix is a full uint32, not a varint
        data = encode_bytes(np.array([b"x" * 300], dtype=object))
        assert data[:4] == (300).to_bytes(4, "little")

    def test_empty_buffer_is_zero_elements(self) -> None:
        assert decode_bytes(b"", 0).shape == (0,)

    def test_numpy_string_arrays_encode(self) -> None:
        assert encode_bytes(np.array(["ab", "c"])) == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
        assert encode_bytes(np.array([b"ab"], dtype=np.bytes_)) == b"\x02\x00\x00\x00ab"

    def test_truncated_length_prefix(self) -> None:
        with pytest.raises(InvalidInput, match=r"incomplete string length indicator .* only 2 bytes"):
            decode_bytes(b"\x05\x00\x00\x00hello\x01\x00")

    def test_truncated_element(self) -> None:
        with pytest.raises(InvalidInput, match="length indicator says 5 bytes, 3 remain"):
            decode_bytes(b"\x05\x00\x00\x00hel")

    def test_wrong_element_count(self) -> None:
        with pytest.raises(InvalidInput, match="expected 2 string elements for the BYTES tensor, got 1"):
            decode_bytes(b"\x01\x00\x00\x00a", 2)

    def test_decode_accepts_memoryview(self) -> None:
        buffer = bytearray(b"\x01\x00\x00\x00z")
        assert list(decode_bytes(memoryview(buffer))) == [b"z"]


class TestDatatype:
    @pytest.mark.parametrize(
        ("name", "numpy_dtype", "itemsize"),
        [
            ("BOOL", np.bool_, 1),
            ("INT8", np.int8, 1),
            ("INT16", np.int16, 2),
            ("INT32", np.int32, 4),
            ("INT64", np.int64, 8),
            ("UINT8", np.uint8, 1),
            ("UINT16", np.uint16, 2),
            ("UINT32", np.uint32, 4),
            ("UINT64", np.uint64, 8),
            ("FP16", np.float16, 2),
            ("FP32", np.float32, 4),
            ("FP64", np.float64, 8),
        ],
    )
    def test_numeric_types(self, name: str, numpy_dtype: type, itemsize: int) -> None:
        dt = datatype.from_name(name)
        assert dt.dtype == np.dtype(numpy_dtype)
        assert dt.itemsize == itemsize
        assert dt.config_name == f"TYPE_{name}"
        assert datatype.from_numpy(np.dtype(numpy_dtype)) is dt

    def test_bytes_is_type_string_in_configs(self) -> None:
        assert datatype.BYTES.config_name == "TYPE_STRING"
        assert datatype.BY_CONFIG_NAME["TYPE_STRING"].name == "BYTES"
        for kind in (object, "S3", "U3"):
            assert datatype.from_numpy(np.dtype(kind)) is datatype.BYTES

    def test_big_endian_numpy_maps_to_the_same_type(self) -> None:
        assert datatype.from_numpy(np.dtype(">f4")).name == "FP32"

    def test_unknown_names(self) -> None:
        with pytest.raises(InvalidInput, match="invalid datatype 'FLOAT'"):
            datatype.from_name("FLOAT")
        with pytest.raises(InvalidInput):
            datatype.from_numpy(np.dtype(np.complex64))
