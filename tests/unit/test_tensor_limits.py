"""Shapes numpy can hold and JSON nesting, checked before anything is decoded: refused as INVALID_ARG
with Triton's messages where Triton has them (it has none for numpy's 64-dimension limit)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tritonclient.grpc import service_pb2

from modelport.codecs import grpc_v2, json_v2
from modelport.errors import ErrorCode, InvalidInput, ModelportError
from modelport.tensor import datatype
from modelport.tensor.shape import INT64_MAX, checked_shape

Tensor = service_pb2.ModelInferRequest.InferInputTensor
Contents = service_pb2.InferTensorContents


class TestShape:
    FP32 = datatype.FP32
    BYTES = datatype.BYTES

    def test_an_ordinary_shape(self) -> None:
        assert checked_shape([2, 0, 3], self.FP32, "IN") == (2, 0, 3)

    def test_more_than_64_dimensions(self) -> None:
        assert checked_shape([1] * 64, self.FP32, "IN") == (1,) * 64
        with pytest.raises(InvalidInput, match="input 'IN' has 65 dimensions; at most 64 are supported"):
            checked_shape([1] * 65, self.FP32, "IN")

    def test_element_count_overflow(self) -> None:
        with pytest.raises(InvalidInput) as info:
            checked_shape([1 << 62, 1 << 62], self.FP32, "IN")
        assert info.value.message == f"element count for tensor 'IN' exceeds maximum size of {INT64_MAX}"

    @pytest.mark.parametrize("shape", [[0, 1 << 62], [1 << 62, 0], [0, 1 << 61]])
    def test_a_shape_numpy_cannot_hold_even_empty(self, shape: list[int]) -> None:
        with pytest.raises(InvalidInput) as info:
            checked_shape(shape, self.FP32, "IN")
        assert info.value.message.startswith(f"byte size for tensor 'IN' exceeds maximum size of {INT64_MAX}")

    def test_size_depends_on_the_datatype(self) -> None:
        assert checked_shape([0, 1 << 62], datatype.BY_NAME["UINT8"], "IN") == (0, 1 << 62)
        with pytest.raises(InvalidInput):
            checked_shape([0, 1 << 61], self.BYTES, "IN")  # BYTES tensors hold 8-byte pointers

    def test_negative_dimension(self) -> None:
        with pytest.raises(InvalidInput, match="All input dimensions should be specified for input 'IN'"):
            checked_shape([-1, 2], self.FP32, "IN")


def _json_error(doc: dict[str, Any] | bytes) -> str:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidInput) as info:
        json_v2.decode_request(body, None, "m")
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def _nested_bytes_input(depth: int, shape: list[int]) -> bytes:
    """An infer body whose BYTES `data` is one string inside `depth` arrays (json.dumps recurses)."""
    data = "[" * depth + '"a"' + "]" * depth
    return (
        '{"inputs": [{"name": "IN", "datatype": "BYTES", "shape": '
        + json.dumps(shape)
        + ', "data": '
        + data
        + "}]}"
    ).encode()


class TestJsonCodec:
    def test_more_than_64_dimensions(self) -> None:
        doc = {"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1] * 65, "data": [1.0]}]}
        assert _json_error(doc) == "input 'IN' has 65 dimensions; at most 64 are supported"

    def test_huge_shape_with_a_zero(self) -> None:
        doc = {"inputs": [{"name": "IN", "datatype": "FP32", "shape": [0, 1 << 62], "data": []}]}
        assert _json_error(doc).startswith("byte size for tensor 'IN' exceeds maximum size of")

    def test_bytes_nested_1000_deep(self) -> None:
        assert _json_error(_nested_bytes_input(1000, [1])) == (
            "JSON nesting depth exceeds maximum allowed limit (100) in 'data' of input 'IN'"
        )

    def test_bytes_nested_100_deep_is_allowed(self) -> None:
        request = json_v2.decode_request(_nested_bytes_input(100, [1, 1]), None, "m")
        assert request.inputs[0].data.reshape(-1).tolist() == [b"a"]
        assert "nesting depth" in _json_error(_nested_bytes_input(101, [1, 1]))

    def test_bytes_data_beyond_the_shape_stops_early(self) -> None:
        doc = {"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [2], "data": ["a", "b", "c"]}]}
        assert _json_error(doc).endswith("shape [2] needs 2 elements, got more than 2")


def _grpc_error(msg: Any) -> str:
    with pytest.raises(ModelportError) as info:
        grpc_v2.decode_request(msg)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


class TestGrpcCodec:
    def test_more_than_64_dimensions_typed_and_raw(self) -> None:
        typed = Tensor(name="IN", datatype="FP32", shape=[1] * 65, contents=Contents(fp32_contents=[1.0]))
        raw = Tensor(name="IN", datatype="FP32", shape=[1] * 65)
        expected = "input 'IN' has 65 dimensions; at most 64 are supported"
        assert _grpc_error(service_pb2.ModelInferRequest(model_name="m", inputs=[typed])) == expected
        msg = service_pb2.ModelInferRequest(model_name="m", inputs=[raw], raw_input_contents=[b"\0" * 4])
        assert _grpc_error(msg) == expected

    def test_huge_shape_with_a_zero(self) -> None:
        tensor = Tensor(name="IN", datatype="FP32", shape=[0, 1 << 62])
        msg = service_pb2.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=[b""])
        assert _grpc_error(msg).startswith("byte size for tensor 'IN' exceeds maximum size of")

    def test_typed_bytes_count_is_checked_before_conversion(self) -> None:
        tensor = Tensor(name="IN", datatype="BYTES", shape=[1], contents=Contents(bytes_contents=[b""] * 3))
        message = _grpc_error(service_pb2.ModelInferRequest(model_name="m", inputs=[tensor]))
        assert message.endswith("Expected 1 for shape [1], got 3")
