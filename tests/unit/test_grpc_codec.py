"""codecs/grpc_v2: ModelInferRequest -> InferRequest and InferResponse -> ModelInferResponse, no sockets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from modelport.codecs import grpc_v2
from modelport.errors import ErrorCode, InvalidInput, ModelportError
from modelport.tensor.records import InferOutput, InferResponse

Tensor = service_pb2.ModelInferRequest.InferInputTensor
Contents = service_pb2.InferTensorContents


def request(**fields: Any) -> Any:
    fields.setdefault("model_name", "m")
    return service_pb2.ModelInferRequest(**fields)


def fails(msg: Any, code: ErrorCode = ErrorCode.INVALID_ARG) -> str:
    with pytest.raises(ModelportError) as info:
        grpc_v2.decode_request(msg)
    assert info.value.code is code
    return info.value.message


# --- inputs ---------------------------------------------------------------------------------------
class TestRawInputs:
    def test_numeric_views_without_copies(self) -> None:
        raw = np.arange(6, dtype=np.float32).tobytes()
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[2, 3])], raw_input_contents=[raw])
        decoded = grpc_v2.decode_request(msg)
        (inp,) = decoded.inputs
        assert (inp.name, inp.datatype, inp.shape) == ("X", "FP32", (2, 3))
        np.testing.assert_array_equal(inp.data, np.arange(6, dtype=np.float32).reshape(2, 3))
        assert not inp.data.flags.owndata  # a view of the received bytes

    def test_raw_contents_taken_in_input_order(self) -> None:
        msg = request(
            inputs=[
                Tensor(name="A", datatype="INT32", shape=[2]),
                Tensor(name="B", datatype="FP16", shape=[1]),
            ],
            raw_input_contents=[np.array([1, 2], np.int32).tobytes(), np.array([0.5], np.float16).tobytes()],
        )
        a, b = grpc_v2.decode_request(msg).inputs
        assert a.data.tolist() == [1, 2]
        assert b.data.dtype == np.float16 and b.data.tolist() == [0.5]

    def test_bytes(self) -> None:
        raw = b"\x02\x00\x00\x00hi\x00\x00\x00\x00"
        msg = request(inputs=[Tensor(name="S", datatype="BYTES", shape=[2, 1])], raw_input_contents=[raw])
        (inp,) = grpc_v2.decode_request(msg).inputs
        assert inp.data.shape == (2, 1)
        assert inp.data.reshape(-1).tolist() == [b"hi", b""]

    def test_size_mismatch(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="FP32", shape=[4])], raw_input_contents=[b"\x00" * 12]
        )
        assert fails(msg) == "input byte size mismatch for input 'X' for model 'm'. Expected 16, got 12"

    def test_missing_data(self) -> None:
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[4])])
        assert fails(msg) == "unable to find data for input tensor 'X' for model 'm' in request."

    def test_extra_raw_contents(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="FP32", shape=[1])], raw_input_contents=[b"\0" * 4] * 2
        )
        assert "unexpected number of raw_input_contents for model 'm': 2 given" in fails(msg)

    def test_negative_dimension(self) -> None:
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[-1, 2])], raw_input_contents=[b""])
        assert "All input dimensions should be specified for input 'X'" in fails(msg)

    def test_unknown_datatype(self) -> None:
        msg = request(inputs=[Tensor(name="X", datatype="FP8", shape=[1])], raw_input_contents=[b"\0"])
        assert fails(msg) == "invalid datatype 'FP8'"

    def test_mixed_raw_and_contents(self) -> None:
        msg = request(
            inputs=[
                Tensor(name="A", datatype="FP32", shape=[1], contents=Contents(fp32_contents=[1.0])),
                Tensor(name="B", datatype="FP32", shape=[1]),
            ],
            raw_input_contents=[b"\0" * 4],
        )
        assert (
            fails(msg)
            == "contents field must not be specified when using raw_input_contents for 'A' for model 'm'"
        )


class TestTypedContents:
    @pytest.mark.parametrize(
        ("datatype", "field", "values", "dtype"),
        [
            ("BOOL", "bool_contents", [True, False], np.bool_),
            ("INT8", "int_contents", [-128, 127], np.int8),
            ("INT16", "int_contents", [-32768, 32767], np.int16),
            ("INT32", "int_contents", [-(2**31), 2**31 - 1], np.int32),
            ("INT64", "int64_contents", [-(2**63), 2**63 - 1], np.int64),
            ("UINT8", "uint_contents", [0, 255], np.uint8),
            ("UINT16", "uint_contents", [0, 65535], np.uint16),
            ("UINT32", "uint_contents", [0, 2**32 - 1], np.uint32),
            ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
            ("FP32", "fp32_contents", [0.5, -1.25], np.float32),
            ("FP64", "fp64_contents", [1e300, -2.5], np.float64),
        ],
    )
    def test_each_field(self, datatype: str, field: str, values: list[Any], dtype: Any) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype=datatype, shape=[1, 2], contents=Contents(**{field: values}))]
        )
        (inp,) = grpc_v2.decode_request(msg).inputs
        assert inp.data.dtype == np.dtype(dtype)
        assert inp.data.shape == (1, 2)
        np.testing.assert_array_equal(inp.data, np.array([values], dtype=dtype))

    def test_narrowing_keeps_low_bytes(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="INT8", shape=[1], contents=Contents(int_contents=[300]))]
        )
        assert grpc_v2.decode_request(msg).inputs[0].data.tolist() == [44]

    def test_bytes_contents(self) -> None:
        msg = request(
            inputs=[
                Tensor(name="S", datatype="BYTES", shape=[2], contents=Contents(bytes_contents=[b"a", b"bc"]))
            ]
        )
        assert grpc_v2.decode_request(msg).inputs[0].data.tolist() == [b"a", b"bc"]

    def test_field_of_the_wrong_type(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="FP32", shape=[1], contents=Contents(int_contents=[1]))]
        )
        assert fails(msg) == (
            "unexpected explicit tensor data for input tensor 'X' for model 'm' of type 'INT32', "
            "expected datatype 'FP32'"
        )

    def test_two_fields(self) -> None:
        contents = Contents(fp32_contents=[1.0], int_contents=[1])
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[1], contents=contents)])
        assert "binary data was already supplied" in fails(msg)

    def test_element_count(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="FP32", shape=[3], contents=Contents(fp32_contents=[1.0]))]
        )
        assert "Expected 3 for shape [3], got 1" in fails(msg)

    def test_fp16_has_no_typed_field(self) -> None:
        msg = request(
            inputs=[Tensor(name="X", datatype="FP16", shape=[1], contents=Contents(fp32_contents=[1.0]))]
        )
        assert "expected datatype 'FP16'" in fails(msg)


# --- request metadata -----------------------------------------------------------------------------
class TestRequestFields:
    def test_id_version_and_parameters(self) -> None:
        msg = request(id="abc", model_version="3")
        msg.parameters["sequence_id"].int64_param = 9
        msg.parameters["sequence_start"].bool_param = True
        msg.parameters["priority"].uint64_param = 2
        msg.parameters["timeout"].int64_param = 1000
        msg.parameters["custom"].string_param = "x"
        msg.parameters["triton_enable_empty_final_response"].bool_param = True
        decoded = grpc_v2.decode_request(msg)
        assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "3", "abc")
        assert decoded.parameters == {
            "sequence_id": 9, "sequence_start": True, "priority": 2, "timeout": 1000, "custom": "x"
        }  # fmt: skip

    def test_non_numeric_version(self) -> None:
        assert fails(request(model_version="latest")) == (
            "failed to get model version from specified version string 'latest'"
        )

    @pytest.mark.parametrize(
        ("key", "kind", "value", "message"),
        [
            (
                "sequence_start",
                "int64_param",
                1,
                "invalid value type for 'sequence_start' parameter, expected bool_param.",
            ),
            (
                "timeout",
                "string_param",
                "1",
                "invalid value type for 'timeout' parameter, expected int64_param.",
            ),
            ("priority", "int64_param", -1, "invalid value for 'priority', expected value >= 0."),
            ("custom", "double_param", 1.5, "expected int64_param, bool_param, or string_param."),
            ("triton_other", "bool_param", True, "reserved for Triton usage"),
        ],
    )
    def test_parameter_checks(self, key: str, kind: str, value: Any, message: str) -> None:
        msg = request()
        setattr(msg.parameters[key], kind, value)
        assert message in fails(msg)

    def test_requested_outputs(self) -> None:
        msg = request()
        plain = msg.outputs.add(name="A")
        classified = msg.outputs.add(name="B")
        classified.parameters["classification"].int64_param = 3
        plain.parameters["custom"].bool_param = True
        a, b = grpc_v2.decode_request(msg).outputs
        assert (a.name, a.classification, a.parameters) == ("A", 0, {"custom": True})
        assert (b.name, b.classification, b.parameters) == ("B", 3, {})

    @pytest.mark.parametrize(
        ("kind", "value", "message"),
        [
            ("string_param", "3", "invalid value type for 'classification' parameter, expected int64_param"),
            ("int64_param", 0, "invalid value for 'classification' parameter, expected >= 1"),
        ],
    )
    def test_bad_classification(self, kind: str, value: Any, message: str) -> None:
        msg = request()
        setattr(msg.outputs.add(name="A").parameters["classification"], kind, value)
        assert fails(msg) == message

    def test_shared_memory_needs_a_registry(self) -> None:
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[1])])
        msg.inputs[0].parameters["shared_memory_region"].string_param = "r"
        msg.inputs[0].parameters["shared_memory_byte_size"].int64_param = 4
        fails(msg, ErrorCode.UNSUPPORTED)

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"shared_memory_region": ("string_param", "r")},
             "'shared_memory_byte_size' must be specified along with 'shared_memory_region'"),
            ({"shared_memory_byte_size": ("int64_param", 4)},
             "'shared_memory_byte_size' can not be specified without 'shared_memory_region'"),
            ({"shared_memory_region": ("int64_param", 1), "shared_memory_byte_size": ("int64_param", 4)},
             "invalid value type for 'shared_memory_region' parameter for tensor 'X'"),
        ],
    )  # fmt: skip
    def test_shared_memory_parameter_checks(self, params: dict[str, tuple[str, Any]], message: str) -> None:
        msg = request(inputs=[Tensor(name="X", datatype="FP32", shape=[1])])
        for key, (kind, value) in params.items():
            setattr(msg.inputs[0].parameters[key], kind, value)
        assert message in fails(msg)


# --- responses ------------------------------------------------------------------------------------
def response(*outputs: InferOutput, **fields: Any) -> InferResponse:
    return InferResponse(model_name="m", model_version="2", outputs=list(outputs), **fields)


class TestResponse:
    def test_every_output_in_raw_contents(self) -> None:
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        b = np.array([[True], [False]])
        msg = grpc_v2.encode_response(
            response(InferOutput("A", "FP32", (2, 3), a), InferOutput("B", "BOOL", (2, 1), b), id="req")
        )
        assert (msg.model_name, msg.model_version, msg.id) == ("m", "2", "req")
        assert [(o.name, o.datatype, list(o.shape)) for o in msg.outputs] == [
            ("A", "FP32", [2, 3]),
            ("B", "BOOL", [2, 1]),
        ]
        assert msg.raw_output_contents[0] == a.tobytes()
        assert msg.raw_output_contents[1] == b"\x01\x00"
        assert not msg.outputs[0].HasField("contents")

    def test_non_contiguous_and_big_endian(self) -> None:
        a = np.arange(6, dtype=">i4").reshape(2, 3).T
        msg = grpc_v2.encode_response(response(InferOutput("A", "INT32", (3, 2), a)))
        assert np.frombuffer(msg.raw_output_contents[0], "<i4").tolist() == a.reshape(-1).tolist()

    def test_bytes_output(self) -> None:
        data = np.array([b"x", "y\u00e9"], dtype=object)
        msg = grpc_v2.encode_response(response(InferOutput("S", "BYTES", (2,), data)))
        assert msg.raw_output_contents[0] == b"\x01\x00\x00\x00x\x03\x00\x00\x00y\xc3\xa9"

    def test_empty_and_shared_memory_outputs_keep_their_slot(self) -> None:
        empty = InferOutput("E", "FP32", (0,), np.empty(0, np.float32))
        in_region = InferOutput(
            "R", "FP32", (1,), np.ones(1, np.float32),
            parameters={"shared_memory_region": "r", "shared_memory_byte_size": 4},
        )  # fmt: skip
        last = InferOutput("L", "INT8", (1,), np.array([7], np.int8))
        msg = grpc_v2.encode_response(response(empty, in_region, last))
        assert list(msg.raw_output_contents) == [b"", b"", b"\x07"]
        assert msg.outputs[1].parameters["shared_memory_region"].string_param == "r"
        assert msg.outputs[1].parameters["shared_memory_byte_size"].int64_param == 4

    def test_parameters(self) -> None:
        params = {"b": True, "i": -3, "u": 2**64 - 1, "f": 0.25, "s": "text"}
        msg = grpc_v2.encode_response(response(parameters=params))
        assert grpc_v2.tensor_parameters(msg.parameters) == params
        assert msg.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"

    def test_stream_response_is_final(self) -> None:
        msg = grpc_v2.encode_stream_response(
            response(InferOutput("A", "INT8", (1,), np.array([1], np.int8)), id="7")
        )
        assert msg.error_message == ""
        assert msg.infer_response.id == "7"
        assert msg.infer_response.parameters["triton_final_response"].bool_param is True
        assert msg.infer_response.raw_output_contents[0] == b"\x01"

    def test_stream_error(self) -> None:
        msg = grpc_v2.encode_stream_error("9", "boom")
        assert msg.error_message == "boom"
        assert msg.infer_response.id == "9"
        assert len(msg.infer_response.outputs) == 0


def test_round_trip_through_the_wire_format() -> None:
    """What tritonclient builds decodes to what it meant."""
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc._utils import _get_inference_request

    data = np.arange(8, dtype=np.int64).reshape(2, 4)
    inp = grpcclient.InferInput("X", [2, 4], "INT64")
    inp.set_data_from_numpy(data)
    out = grpcclient.InferRequestedOutput("Y", class_count=2)
    msg = _get_inference_request(
        model_name="m", inputs=[inp], model_version="1", request_id="r", outputs=[out],
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None,
    )  # fmt: skip
    wire = service_pb2.ModelInferRequest.FromString(msg.SerializeToString())
    decoded = grpc_v2.decode_request(wire)
    np.testing.assert_array_equal(decoded.inputs[0].data, data)
    assert decoded.outputs[0].classification == 2
    assert (decoded.model_version, decoded.id) == ("1", "r")


def test_invalid_input_is_the_error_type() -> None:
    with pytest.raises(InvalidInput):
        grpc_v2.decode_request(request(inputs=[Tensor(name="X", datatype="FP32", shape=[1])]))
