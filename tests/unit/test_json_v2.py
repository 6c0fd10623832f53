"""The KServe v2 JSON codec with Triton's binary tensor data extension."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelport.codecs import binary
from modelport.codecs.json_v2 import decode_request, encode_response, parse_json_object
from modelport.errors import ErrorCode, InvalidInput
from modelport.tensor.records import InferOutput, InferRequest, InferResponse, RequestedOutput


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _binary(doc: dict[str, Any], *blobs: bytes) -> tuple[bytes, int]:
    header = _json(doc)
    return header + b"".join(blobs), len(header)


def _fp32_input(name: str = "IN", shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": shape or [1, 4], **extra}


def _error(body: bytes, header_length: int | None = None) -> str:
    with pytest.raises(InvalidInput) as info:
        decode_request(body, header_length, "m")
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


class TestParseJsonObject:
    """The one parser of request JSON documents (infer bodies and the HTTP control endpoints)."""

    def test_an_object_from_bytes_or_a_view(self) -> None:
        assert parse_json_object(b'{"a": [1]}') == {"a": [1]}
        assert parse_json_object(memoryview(b'xx{"a": 1}')[2:]) == {"a": 1}

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "failed to parse the request JSON buffer: "),
            (b"", "failed to parse the request JSON buffer: "),
            (b"[1, 2]", "failed to parse the request JSON buffer: expected a JSON object"),
            (b'"text"', "failed to parse the request JSON buffer: expected a JSON object"),
        ],
    )
    def test_anything_else_is_invalid_input(self, body: bytes, message: str) -> None:
        with pytest.raises(InvalidInput) as info:
            parse_json_object(body)
        assert info.value.code is ErrorCode.INVALID_ARG
        assert info.value.message.startswith(message)


class TestDecodeJson:
    def test_basic_request(self) -> None:
        body = _json(
            {
                "id": "r1",
                "parameters": {"priority": 1, "custom": "x", "binary_data_output": True},
                "inputs": [_fp32_input(data=[[1, 2], [3, 4]], shape=[2, 2])],
                "outputs": [{"name": "OUT", "parameters": {"binary_data": False, "classification": 3}}],
            }
        )
        request = decode_request(body, None, "m", "2")
        assert (request.model_name, request.model_version, request.id) == ("m", "2", "r1")
        assert request.binary_data_output is True
        assert request.parameters == {"priority": 1, "custom": "x"}
        (inp,) = request.inputs
        assert (inp.name, inp.datatype, inp.shape) == ("IN", "FP32", (2, 2))
        assert inp.data.dtype == np.float32
        np.testing.assert_array_equal(inp.data, [[1, 2], [3, 4]])
        (out,) = request.outputs
        assert (out.name, out.binary, out.classification) == ("OUT", False, 3)

    def test_nested_and_flat_data_are_the_same(self) -> None:
        flat = decode_request(_json({"inputs": [_fp32_input(data=[1, 2, 3, 4], shape=[2, 2])]}), None, "m")
        nested = decode_request(
            _json({"inputs": [_fp32_input(data=[[1, 2], [3, 4]], shape=[2, 2])]}), None, "m"
        )
        np.testing.assert_array_equal(flat.inputs[0].data, nested.inputs[0].data)

    def test_bytes_from_json_strings_are_utf8(self) -> None:
        body = _json(
            {"inputs": [{"name": "S", "datatype": "BYTES", "shape": [2], "data": ["héllo", "日本"]}]}
        )
        data = decode_request(body, None, "m").inputs[0].data
        assert list(data) == ["héllo".encode(), "日本".encode()]

    def test_bool_and_integer_limits(self) -> None:
        body = _json(
            {
                "inputs": [
                    {"name": "B", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                    {"name": "U", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]},
                    {"name": "I", "datatype": "INT64", "shape": [1], "data": [-(2**63)]},
                ]
            }
        )
        b, u, i = decode_request(body, None, "m").inputs
        assert b.data.dtype == np.bool_ and list(b.data) == [True, False]
        assert u.data[0] == np.uint64(2**64 - 1)
        assert i.data[0] == np.int64(-(2**63))

    def test_zero_element_input_needs_no_data(self) -> None:
        request = decode_request(_json({"inputs": [_fp32_input(shape=[1, 0])]}), None, "m")
        assert request.inputs[0].data.shape == (1, 0)

    def test_out_of_range_integer(self) -> None:
        body = _json({"inputs": [{"name": "I", "datatype": "INT8", "shape": [1], "data": [300]}]})
        assert "Unable to parse 'data' of input 'I' as INT8" in _error(body)

    def test_bools_for_a_numeric_tensor(self) -> None:
        body = _json({"inputs": [{"name": "I", "datatype": "INT32", "shape": [2], "data": [True, False]}]})
        assert "Unable to parse 'data' of input 'I' as INT32" in _error(body)

    def test_data_count_mismatch(self) -> None:
        message = _error(_json({"inputs": [_fp32_input(data=[1, 2, 3])]}))
        assert message.startswith("Unable to parse 'data': Shape does not match true shape of 'data' field")
        assert "'IN'" in message

    @pytest.mark.parametrize("dtype", ["FP16", "BF16"])
    def test_half_precision_via_json_is_rejected(self, dtype: str) -> None:
        body = _json({"inputs": [{"name": "INPUT0", "datatype": dtype, "shape": [1], "data": [1.0]}]})
        assert _error(body) == (
            f"receiving {dtype} data via JSON is not supported. "
            "Please use the binary data format for input INPUT0"
        )

    def test_triton_prefixed_parameters_are_reserved(self) -> None:
        body = _json({"parameters": {"triton_enable_empty_final_response": True}, "inputs": []})
        assert _error(body) == (
            "parameter keys starting with 'triton_' are reserved for Triton usage "
            "and should not be specified."
        )

    def test_data_and_binary_data_size_together(self) -> None:
        body, length = _binary(
            {"inputs": [_fp32_input(data=[1, 2, 3, 4], parameters={"binary_data_size": 16})]}, b"\0" * 16
        )
        message = _error(body, length)
        assert message.startswith(
            "Input must set only one of the following fields: 'data', 'binary_data_size' in "
            "'parameters', 'shared_memory_region' in 'parameters'. But set "
        )
        assert message.endswith("'data' 'binary_data_size'")

    def test_no_data_at_all(self) -> None:
        assert "Input must set only one of the following fields" in _error(_json({"inputs": [_fp32_input()]}))

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"{not json", "failed to parse the request JSON buffer"),
            (b"[1, 2]", "failed to parse the request JSON buffer"),
            (b"", "failed to parse the request JSON buffer"),
            (b'{"inputs": {}}', "'inputs' array"),
            (b'{"id": 5, "inputs": []}', "'id' must be a string"),
            (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', "missing 'name'"),
            (
                b'{"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}]}',
                "invalid datatype 'FLOAT'",
            ),
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5], "data": [1]}]}',
                "'shape' of input 'x'",
            ),
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}',
                "All input dimensions should be specified",
            ),
            (b'{"inputs": [], "outputs": [{"parameters": {}}]}', "'outputs'"),
            (
                b'{"inputs": [], "outputs": [{"name": "o", "parameters": {"classification": -1}}]}',
                "classification",
            ),
        ],
    )
    def test_malformed_requests(self, body: bytes, fragment: str) -> None:
        assert fragment in _error(body)

    def test_classification_must_not_be_a_bool(self) -> None:
        body = _json({"inputs": [], "outputs": [{"name": "o", "parameters": {"classification": True}}]})
        assert "classification" in _error(body)

    def test_binary_data_size_must_not_be_a_bool(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": True})]}, b"\0")
        assert "binary_data_size" in _error(body, length)

    def test_null_is_not_a_number(self) -> None:
        _error(_json({"inputs": [_fp32_input(data=[1, None, 3, 4])]}))


class TestDecodeBinary:
    def test_binary_inputs_follow_the_header_in_input_order(self) -> None:
        a = np.arange(4, dtype=np.float32)
        b = np.array([7, 8], dtype=np.int64)
        body, length = _binary(
            {
                "inputs": [
                    _fp32_input("A", parameters={"binary_data_size": a.nbytes}),
                    {"name": "J", "datatype": "INT32", "shape": [1], "data": [5]},
                    {
                        "name": "B",
                        "datatype": "INT64",
                        "shape": [2],
                        "parameters": {"binary_data_size": b.nbytes},
                    },
                ]
            },
            a.tobytes(),
            b.tobytes(),
        )
        request = decode_request(body, length, "m")
        got = {i.name: i.data for i in request.inputs}
        np.testing.assert_array_equal(got["A"], a.reshape(1, 4))
        np.testing.assert_array_equal(got["B"], b)
        assert got["J"].tolist() == [5]
        assert "binary_data_size" not in request.inputs[0].parameters

    def test_binary_inputs_are_views_of_the_body(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": 16})]}, b"\0" * 16)
        data = decode_request(body, length, "m").inputs[0].data
        assert not data.flags.owndata

    def test_binary_bytes_input(self) -> None:
        raw = b"\x02\x00\x00\x00h\xc3\x03\x00\x00\x00abc"
        body, length = _binary(
            {
                "inputs": [
                    {
                        "name": "S",
                        "datatype": "BYTES",
                        "shape": [2, 1],
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ]
            },
            raw,
        )
        data = decode_request(body, length, "m").inputs[0].data
        assert data.shape == (2, 1)
        assert data.reshape(-1).tolist() == [b"h\xc3", b"abc"]

    def test_binary_fp16_is_accepted(self) -> None:
        values = np.array([0.5, -2.0], dtype=np.float16)
        body, length = _binary(
            {
                "inputs": [
                    {"name": "H", "datatype": "FP16", "shape": [2], "parameters": {"binary_data_size": 4}}
                ]
            },
            values.tobytes(),
        )
        np.testing.assert_array_equal(decode_request(body, length, "m").inputs[0].data, values)

    def test_byte_size_mismatch(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": 12})]}, b"\0" * 12)
        assert (
            _error(body, length)
            == "input byte size mismatch for input 'IN' for model 'm'. Expected 16, got 12"
        )

    def test_fewer_bytes_than_declared(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": 16})]}, b"\0" * 12)
        assert (
            _error(body, length)
            == "unexpected size for input 'IN', expecting 4 additional bytes for model 'm'"
        )

    def test_leftover_bytes(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": 16})]}, b"\0" * 20)
        assert _error(body, length) == "unexpected additional input data for model 'm'"

    def test_leftover_bytes_with_json_only_inputs(self) -> None:
        body, length = _binary({"inputs": [_fp32_input(data=[1, 2, 3, 4])]}, b"junk")
        assert _error(body, length) == "unexpected additional input data for model 'm'"

    def test_binary_input_without_the_header(self) -> None:
        body = _json({"inputs": [_fp32_input(parameters={"binary_data_size": 16})]})
        assert _error(body, None) == (
            "must specify valid 'Infer-Header-Content-Length' in request header and 'binary_data_size' when "
            "passing inputs in binary data format"
        )

    def test_binary_bytes_without_the_header_are_not_json(self) -> None:
        body, _ = _binary({"inputs": [_fp32_input(parameters={"binary_data_size": 16})]}, b"\0" * 16)
        assert "failed to parse the request JSON buffer" in _error(body, None)

    @pytest.mark.parametrize("length", [-1, 10_000])
    def test_header_length_outside_the_body(self, length: int) -> None:
        assert "Inference-Header-Content-Length" in _error(_json({"inputs": []}), length)

    def test_binary_bytes_with_truncated_element(self) -> None:
        raw = b"\x09\x00\x00\x00abc"
        body, length = _binary(
            {
                "inputs": [
                    {
                        "name": "S",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ]
            },
            raw,
        )
        assert "truncated BYTES element" in _error(body, length)


class TestHeaderLength:
    def test_parse(self) -> None:
        assert binary.parse_header_length(None) is None
        assert binary.parse_header_length("42") == 42
        with pytest.raises(InvalidInput, match="must be an integer"):
            binary.parse_header_length("forty")

    def test_split_without_header_is_all_json(self) -> None:
        header, rest = binary.split_body(b'{"a":1}', None)
        assert bytes(header) == b'{"a":1}' and len(rest) == 0

    def test_join_response_without_blob_bytes_is_plain_json(self) -> None:
        assert binary.join_response(b"{}", [b"", b""]) == (b"{}", None)
        assert binary.join_response(b"{}", [b"ab", b"", b"c"]) == (b"{}abc", 2)


def _response(*outputs: InferOutput, request_id: str = "") -> InferResponse:
    return InferResponse(model_name="m", model_version="3", id=request_id, outputs=list(outputs))


def _split(payload: bytes, length: int | None) -> tuple[dict[str, Any], bytes]:
    if length is None:
        return json.loads(payload), b""
    return json.loads(payload[:length]), payload[length:]


class TestEncodeResponse:
    FLOATS = InferOutput("F", "FP32", (2, 2), np.array([[1, 2], [3, 4.5]], dtype=np.float32))
    STRINGS = InferOutput("S", "BYTES", (2,), np.array([b"h\xc3\xa9", b"x"], dtype=object))

    def test_json_outputs_are_flat(self) -> None:
        payload, length = encode_response(_response(self.FLOATS, self.STRINGS), InferRequest("m"))
        assert length is None
        doc = json.loads(payload)
        assert doc == {
            "model_name": "m",
            "model_version": "3",
            "outputs": [
                {"name": "F", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.5]},
                {"name": "S", "datatype": "BYTES", "shape": [2], "data": ["hé", "x"]},
            ],
        }
        assert b'"data":[1.0,2.0,3.0,4.5]' in payload  # floats keep their decimal point

    def test_id_only_when_given(self) -> None:
        payload, _ = encode_response(_response(self.FLOATS, request_id="abc"), InferRequest("m"))
        assert json.loads(payload)["id"] == "abc"

    def test_binary_data_output_makes_every_unlisted_output_binary(self) -> None:
        request = InferRequest("m", binary_data_output=True)
        payload, length = encode_response(_response(self.FLOATS, self.STRINGS), request)
        doc, blobs = _split(payload, length)
        sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
        assert sizes == [16, 4 + 3 + 4 + 1]
        assert all("data" not in o for o in doc["outputs"])
        assert blobs[:16] == self.FLOATS.data.tobytes()
        assert blobs[16:] == b"\x03\x00\x00\x00h\xc3\xa9\x01\x00\x00\x00x"

    def test_per_output_choice_overrides_the_default(self) -> None:
        request = InferRequest(
            "m",
            binary_data_output=True,
            outputs=[RequestedOutput("F", binary=False), RequestedOutput("S", binary=True)],
        )
        doc, blobs = _split(*encode_response(_response(self.FLOATS, self.STRINGS), request))
        assert doc["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.5]
        assert doc["outputs"][1]["parameters"] == {"binary_data_size": 12}
        assert len(blobs) == 12

    def test_zero_size_binary_output_lists_size_zero_and_stays_json(self) -> None:
        empty = InferOutput("E", "INT8", (1, 0), np.zeros((1, 0), dtype=np.int8))
        payload, length = encode_response(_response(empty), InferRequest("m", binary_data_output=True))
        assert length is None
        assert json.loads(payload)["outputs"][0]["parameters"] == {"binary_data_size": 0}

    def test_output_parameters_are_kept(self) -> None:
        out = InferOutput("F", "FP32", (1,), np.array([1], dtype=np.float32), parameters={"note": "x"})
        payload, length = encode_response(_response(out), InferRequest("m", binary_data_output=True))
        doc, _ = _split(payload, length)
        assert doc["outputs"][0]["parameters"] == {"note": "x", "binary_data_size": 4}

    @pytest.mark.parametrize(
        ("dtype", "values"),
        [
            (np.bool_, [True, False]),
            (np.int8, [-128, 127]),
            (np.uint16, [0, 65535]),
            (np.int64, [-(2**63), 2**63 - 1]),
            (np.uint64, [0, 2**64 - 1]),
            (np.float64, [0.1, -1e300]),
        ],
    )
    def test_json_values_are_exact(self, dtype: type, values: list[Any]) -> None:
        from modelport.tensor.datatype import from_numpy

        array = np.array(values, dtype=dtype)
        out = InferOutput("X", from_numpy(array.dtype).name, array.shape, array)
        doc = json.loads(encode_response(_response(out), InferRequest("m"))[0])
        assert doc["outputs"][0]["data"] == values
