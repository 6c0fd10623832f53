"""The generate extension's JSON mapping (codecs/generate.py), with Triton's shapes and messages."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelport.codecs.generate import (
    NOT_ONE_RESPONSE,
    decode_request,
    encode_error,
    encode_response,
    sse_event,
)
from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import ModelSpec, build_spec
from modelport.errors import ErrorCode, InvalidInput, ModelportError
from modelport.tensor.records import InferOutput, InferRequest, InferResponse

BATCHED = """
name: "add_sub"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

SHAPES = """
name: "shapes"
backend: "python"
max_batch_size: 0
input [
  { name: "A" data_type: TYPE_INT32 dims: [ 2, -1 ] },
  { name: "B" data_type: TYPE_FP32 dims: [ -1, -1 ] },
  { name: "C" data_type: TYPE_BOOL dims: [ 1 ] },
  { name: "H" data_type: TYPE_FP16 dims: [ 1 ] },
  { name: "text_input" data_type: TYPE_STRING dims: [ -1 ] },
  { name: "U" data_type: TYPE_UINT8 dims: [ -1 ] }
]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

TEXT_BATCHED = """
name: "text"
backend: "python"
max_batch_size: 4
input [ { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] } ]
"""


def _spec(text: str) -> ModelSpec:
    config = parse_pbtxt(text, "cfg")
    apply_defaults(config, gpu_count=0)
    return build_spec(config)


def _decode(text: str, doc: Any, limit: int = 0) -> InferRequest:
    return decode_request(json.dumps(doc).encode(), _spec(text), "", limit)


def _error(text: str, doc: Any, limit: int = 0) -> str:
    with pytest.raises(InvalidInput) as info:
        _decode(text, doc, limit)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def _inputs(request: InferRequest) -> dict[str, tuple[str, tuple[int, ...], list[Any]]]:
    return {i.name: (i.datatype, i.shape, i.data.reshape(-1).tolist()) for i in request.inputs}


class TestInputs:
    def test_a_list_fills_the_inner_dims_and_a_batching_model_gets_its_batch(self) -> None:
        request = _decode(BATCHED, {"INPUT0": [1, 2, 3, 4], "INPUT1": [0.5, 0, 0, 0]})
        assert _inputs(request) == {
            "INPUT0": ("FP32", (1, 4), [1.0, 2.0, 3.0, 4.0]),
            "INPUT1": ("FP32", (1, 4), [0.5, 0.0, 0.0, 0.0]),
        }
        assert request.inputs[0].data.dtype == np.float32
        assert request.outputs == [] and request.parameters == {} and request.id == ""

    def test_twice_the_elements_of_the_fixed_dims_is_a_batch_of_two(self) -> None:
        request = _decode(BATCHED, {"INPUT0": list(range(8)), "INPUT1": list(range(8))})
        assert [i.shape for i in request.inputs] == [(2, 4), (2, 4)]

    def test_the_innermost_variable_dim_takes_the_rest_and_the_others_are_one(self) -> None:
        request = _decode(SHAPES, {"A": [1, 2, 3, 4, 5, 6], "B": [1.5, 2], "C": True, "text_input": "hi"})
        assert _inputs(request) == {
            "A": ("INT32", (2, 3), [1, 2, 3, 4, 5, 6]),
            "B": ("FP32", (1, 2), [1.5, 2.0]),
            "C": ("BOOL", (1,), [True]),
            "text_input": ("BYTES", (1,), [b"hi"]),
        }

    def test_strings_become_a_bytes_tensor_with_the_batch_dimension(self) -> None:
        request = _decode(TEXT_BATCHED, {"text_input": ["héllo", "bye"]})
        assert _inputs(request) == {"text_input": ("BYTES", (2, 1), ["héllo".encode(), b"bye"])}

    def test_a_string_nested_in_a_list_counts_as_its_list(self) -> None:
        assert _inputs(_decode(TEXT_BATCHED, {"text_input": [["a"]]})) == {
            "text_input": ("BYTES", (1, 1), [b"a"])
        }

    def test_an_empty_list_is_an_empty_tensor(self) -> None:
        request = _decode(SHAPES, {"U": []})
        assert _inputs(request) == {"U": ("UINT8", (0,), [])}

    @pytest.mark.parametrize(
        "doc",
        [
            {"INPUT0": [1, 2, 3]},  # not a multiple of the fixed dim
            {"INPUT0": 1},
            {"INPUT0": [[1, 2], [3, 4]]},  # the outer list counts: 2 elements
        ],
    )
    def test_a_count_the_dims_cannot_hold_is_refused(self, doc: dict[str, Any]) -> None:
        assert _error(BATCHED, doc) == "The schema can not convert input 'INPUT0' to tensor with proper shape"

    def test_nested_numbers_beyond_the_outer_count_do_not_match_the_shape(self) -> None:
        message = _error(SHAPES, {"A": [[1, 2], [3, 4]]})
        assert message == "Unable to parse 'data': Shape does not match true shape of 'data' field"

    @pytest.mark.parametrize(
        ("doc", "reason"),
        [
            ({"INPUT0": ["a", "b", "c", "d"]}, "attempt to access JSON non-number as double"),
            ({"INPUT0": [1, 2, None, 4]}, "attempt to access JSON non-number as double"),
            ({"INPUT0": [1, 2, True, 4]}, "attempt to access JSON non-number as double"),
        ],
    )
    def test_values_of_the_wrong_json_kind_are_refused_with_tritons_reason(
        self, doc: dict[str, Any], reason: str
    ) -> None:
        assert _error(BATCHED, doc) == f"Unable to parse 'data': {reason}"

    @pytest.mark.parametrize(
        ("doc", "reason"),
        [
            ({"A": [1.5, 2]}, "attempt to access JSON non-signed-integer as signed-integer"),
            ({"C": 1}, "attempt to access JSON non-boolean as boolean"),
            ({"U": [1.5, 2]}, "attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ],
    )
    def test_integer_and_boolean_kinds(self, doc: dict[str, Any], reason: str) -> None:
        assert _error(SHAPES, doc) == f"Unable to parse 'data': {reason}"

    def test_a_value_out_of_the_datatypes_range_is_refused_not_wrapped(self) -> None:
        for values in ([256], [-1]):
            assert _error(SHAPES, {"U": values}).startswith("Unable to parse 'data': ")

    def test_a_non_string_for_a_bytes_input(self) -> None:
        expected = "Unable to parse JSON bytes array: attempt to access JSON non-string as string"
        assert _error(SHAPES, {"text_input": 5}) == expected
        assert _error(SHAPES, {"text_input": ["a", 5]}) == expected

    def test_fp16_needs_the_binary_format(self) -> None:
        assert _error(SHAPES, {"H": 1}) == (
            "receiving FP16 data via JSON is not supported. Please use the binary data format for input H"
        )

    def test_the_total_input_size_is_bounded(self) -> None:
        message = _error(BATCHED, {"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 2, 3, 4]}, limit=20)
        assert message == (
            "request size of 16 bytes with input 'INPUT1' of size 16 bytes exceeds the maximum allowed input "
            "size of 20. Use --http-max-input-size to increase the limit."
        )
        assert len(_decode(BATCHED, {"INPUT0": [1, 2, 3, 4]}, limit=16).inputs) == 1


class TestParametersAndId:
    def test_other_keys_and_the_parameters_object_become_request_parameters(self) -> None:
        doc = {
            "id": "42",
            "INPUT0": [1, 2, 3, 4],
            "temperature": 0.5,
            "parameters": {"max_tokens": 5, "stream": False, "stop": "x", "INPUT1": [1, 1, 1, 1]},
        }
        request = _decode(BATCHED, doc)
        assert request.id == "42"
        # Triton passes "id" on as a parameter as well
        assert request.parameters == {
            "id": "42", "temperature": 0.5, "max_tokens": 5, "stream": False, "stop": "x",
        }  # fmt: skip
        assert type(request.parameters["stream"]) is bool
        assert [i.name for i in request.inputs] == ["INPUT0", "INPUT1"]  # an input inside "parameters"

    def test_an_integer_past_int64_becomes_a_double(self) -> None:
        assert _decode(BATCHED, {"big": 2**64 - 1}).parameters == {"big": float(2**64 - 1)}

    @pytest.mark.parametrize("value", [[1, 2], None, {"x": 1}])
    def test_a_parameter_must_be_a_scalar(self, value: Any) -> None:
        assert _error(BATCHED, {"bad": value}) == (
            "parameter 'bad' has invalid type. It should be either 'int', 'bool', or 'string'."
        )

    def test_errors_inside_parameters_name_the_keyword(self) -> None:
        assert _error(BATCHED, {"parameters": {"x": [1]}}) == (
            "Converting keyword: 'parameters': parameter 'x' has invalid type. It should be either 'int', "
            "'bool', or 'string'."
        )
        assert _error(BATCHED, {"parameters": {"parameters": {"a": 1}}}).startswith(
            "Converting keyword: 'parameters': parameter 'parameters' has invalid type."
        )

    def test_parameters_must_be_an_object(self) -> None:
        assert _error(BATCHED, {"parameters": 5}) == (
            "Expected JSON object for keyword: 'parameters': attempt to access JSON non-object as object"
        )

    def test_an_input_given_twice_is_refused(self) -> None:
        doc = {"id": "7", "INPUT1": [1, 1, 1, 1], "parameters": {"INPUT1": [1, 1, 1, 1]}}
        assert _error(BATCHED, doc) == (
            "Converting keyword: 'parameters': [request id: 7] input 'INPUT1' already exists in request"
        )

    def test_the_id_must_be_a_string(self) -> None:
        assert (
            _error(BATCHED, {"id": 5}) == "Unable to parse 'id': attempt to access JSON non-string as string"
        )

    @pytest.mark.parametrize("body", [b"", b"[1, 2]", b'{"INPUT0": [1,'])
    def test_the_body_must_be_a_json_object(self, body: bytes) -> None:
        with pytest.raises(InvalidInput, match=r"^failed to parse the request JSON buffer: "):
            decode_request(body, _spec(BATCHED))

    def test_a_model_input_named_parameters_is_refused(self) -> None:
        spec = _spec(BATCHED.replace('"INPUT1"', '"parameters"'))
        with pytest.raises(InvalidInput) as info:
            decode_request(b'{"parameters": {}}', spec)
        assert info.value.message == "Keyword 'parameters' for nested schema also given as input tensor name"


class TestResponses:
    def test_outputs_are_scalars_or_flat_lists_beside_the_names_and_keys_are_sorted(self) -> None:
        response = InferResponse("m", "3", id="42")
        response.outputs = [
            InferOutput("text_output", "BYTES", (1, 1), np.array([[b"hi"]], dtype=object)),
            InferOutput("OUTPUT0", "FP32", (2, 2), np.arange(4, dtype=np.float32).reshape(2, 2)),
            InferOutput("flag", "BOOL", (1,), np.array([True])),
        ]
        body = encode_response(response)
        assert body == (
            b'{"OUTPUT0":[0.0,1.0,2.0,3.0],"flag":true,"id":"42","model_name":"m","model_version":"3",'
            b'"text_output":"hi"}'
        )

    def test_bytes_outputs_are_strings_and_undecodable_bytes_are_replaced(self) -> None:
        response = InferResponse("m", "1")
        response.outputs = [InferOutput("t", "BYTES", (2,), np.array([b"a\xff", "ü".encode()], dtype=object))]
        assert json.loads(encode_response(response)) == {
            "model_name": "m",
            "model_version": "1",
            "t": ["a\ufffd", "ü"],
        }

    def test_names_collide_in_triton_order_reserved_then_parameters_then_outputs(self) -> None:
        response = InferResponse("m", "1", parameters={"x": 1, "model_name": "p"})
        response.outputs = [
            InferOutput("x", "INT32", (1,), np.array([5], np.int32)),
            InferOutput("model_version", "INT32", (1,), np.array([5], np.int32)),
        ]
        assert json.loads(encode_response(response)) == {"model_name": "m", "model_version": "1", "x": 1}

    def test_a_parameter_json_cannot_carry_is_refused(self) -> None:
        with pytest.raises(ModelportError, match="Response parameter 'blob' has type 'bytes'"):
            encode_response(InferResponse("m", "1", parameters={"blob": b"x"}))

    def test_an_empty_output_is_an_empty_list(self) -> None:
        response = InferResponse("m", "1")
        response.outputs = [InferOutput("e", "FP32", (0,), np.zeros(0, np.float32))]
        assert json.loads(encode_response(response))["e"] == []


def test_events_and_errors() -> None:
    assert encode_error('a "b"') == b'{"error":"a \\"b\\""}'
    assert sse_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert "exactly 1 response" in NOT_ONE_RESPONSE
