"""Request validation against the model config, with Triton's messages."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import ModelSpec, build_spec
from modelport.errors import ErrorCode, InvalidInput
from modelport.scheduling.normalize import normalize_request
from modelport.tensor.records import InferInput, InferRequest, RequestedOutput

DYN = """
name: "dyn"
backend: "onnxruntime"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 2, 3 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

NOB = """
name: "nob"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2, -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2, -1 ] } ]
"""

RESHAPE = """
name: "rs"
backend: "onnxruntime"
max_batch_size: 4
input [
  { name: "S" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "M" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape: { shape: [ 6 ] } },
  { name: "V" data_type: TYPE_FP32 dims: [ -1, 2 ] reshape: { shape: [ 2, -1 ] } }
]
output [ { name: "O" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def _spec(text: str) -> ModelSpec:
    config = parse_pbtxt(text, "cfg")
    apply_defaults(config, gpu_count=0)
    return build_spec(config)


def _input(name: str, shape: tuple[int, ...], dtype: str = "FP32") -> InferInput:
    np_dtype = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[dtype]
    return InferInput(name, dtype, shape, np.zeros(shape, dtype=np_dtype))


def _dyn_request(batch: int = 2, request_id: str = "") -> InferRequest:
    return InferRequest(
        "dyn", id=request_id, inputs=[_input("INPUT0", (batch, 5)), _input("INPUT1", (batch, 2, 3), "INT32")]
    )


def _error(request: InferRequest, spec: ModelSpec) -> str:
    with pytest.raises(InvalidInput) as info:
        normalize_request(request, spec)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def test_valid_request_sets_the_batch_size() -> None:
    request = _dyn_request(batch=3)
    normalize_request(request, _spec(DYN))
    assert request.batch_size == 3


def test_non_batching_model_counts_one() -> None:
    request = InferRequest("nob", inputs=[_input("IN", (2, 7))])
    normalize_request(request, _spec(NOB))
    assert request.batch_size == 1


def test_errors_carry_the_request_id_prefix() -> None:
    request = _dyn_request(request_id="abc")
    request.inputs[0].datatype = "INT64"
    assert _error(request, _spec(DYN)).startswith("[request id: abc] ")


def test_errors_without_an_id_say_id_unknown() -> None:
    request = _dyn_request()
    request.inputs.pop()
    assert _error(request, _spec(DYN)).startswith("[request id: <id_unknown>] ")


def test_wrong_datatype() -> None:
    request = _dyn_request()
    request.inputs[0] = _input("INPUT0", (2, 5), "INT32")
    assert _error(request, _spec(DYN)) == (
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'INT32', "
        "but model 'dyn' expects 'FP32'"
    )


def test_wrong_shape_uses_tritons_message_with_the_batch_note() -> None:
    request = _dyn_request()
    request.inputs[1] = _input("INPUT1", (2, 3, 2), "INT32")
    message = _error(request, _spec(DYN))
    assert message.startswith(
        "[request id: <id_unknown>] unexpected shape for input 'INPUT1' for model 'dyn'. "
        "Expected [-1,2,3], got [2,3,2]. NOTE: Setting a non-zero max_batch_size in the model config "
        "requires a batch dimension to be prepended to each input shape."
    )


def test_missing_batch_dim_is_a_shape_error() -> None:
    request = InferRequest("dyn", inputs=[_input("INPUT0", (2,)), _input("INPUT1", (2, 2, 3), "INT32")])
    message = _error(request, _spec(DYN))
    assert "unexpected shape for input 'INPUT0' for model 'dyn'. Expected [-1,-1], got [2]" in message


def test_wrong_shape_on_non_batching_model_has_no_note() -> None:
    request = InferRequest("nob", inputs=[_input("IN", (3, 7))])
    message = _error(request, _spec(NOB))
    assert message.endswith("unexpected shape for input 'IN' for model 'nob'. Expected [2,-1], got [3,7].")


def test_batch_above_max_batch_size() -> None:
    assert _error(_dyn_request(batch=9), _spec(DYN)) == (
        "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'dyn'"
    )


def test_batch_zero() -> None:
    assert "batch-size must be >= 1" in _error(_dyn_request(batch=0), _spec(DYN))


def test_inputs_with_different_batch_sizes() -> None:
    request = InferRequest("dyn", inputs=[_input("INPUT0", (2, 5)), _input("INPUT1", (3, 2, 3), "INT32")])
    assert "batch size does not match" in _error(request, _spec(DYN))


def test_missing_input() -> None:
    request = InferRequest("dyn", inputs=[_input("INPUT0", (1, 5))])
    assert _error(request, _spec(DYN)) == (
        "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'dyn'. "
        "Got input(s) ['INPUT0'], but missing required input(s) ['INPUT1']. "
        "Please provide all required input(s)."
    )


def test_unknown_input() -> None:
    request = _dyn_request()
    request.inputs.append(_input("EXTRA", (2, 1)))
    assert _error(request, _spec(DYN)) == (
        "[request id: <id_unknown>] unexpected inference input 'EXTRA' for model 'dyn'"
    )


def test_duplicate_input() -> None:
    request = _dyn_request()
    request.inputs.append(_input("INPUT0", (2, 5)))
    assert "unique" in _error(request, _spec(DYN))


def test_unknown_requested_output() -> None:
    request = _dyn_request()
    request.outputs = [RequestedOutput("OUTPUT0"), RequestedOutput("NOPE")]
    assert _error(request, _spec(DYN)) == (
        "[request id: <id_unknown>] unexpected inference output 'NOPE' for model 'dyn'"
    )


def test_reshape_is_applied_for_the_backend() -> None:
    request = InferRequest("rs", inputs=[_input("S", (3, 1)), _input("M", (3, 2, 3)), _input("V", (3, 5, 2))])
    normalize_request(request, _spec(RESHAPE))
    shapes = {i.name: i.data.shape for i in request.inputs}
    assert shapes == {"S": (3,), "M": (3, 6), "V": (3, 2, 5)}
    assert request.inputs[0].shape == (3, 1)  # the request's own shape is unchanged


def test_reshape_still_validates_against_dims() -> None:
    request = InferRequest("rs", inputs=[_input("S", (3,)), _input("M", (3, 2, 3)), _input("V", (3, 5, 2))])
    assert "unexpected shape for input 'S' for model 'rs'. Expected [-1,1], got [3]" in _error(
        request, _spec(RESHAPE)
    )
