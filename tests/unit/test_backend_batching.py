"""Gathering a batch's inputs and splitting its outputs, alone and through the onnxruntime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from modelport.backends.base import InstancePlacement
from modelport.backends.batching import gather_inputs, split_outputs
from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend
from modelport.errors import ErrorCode, InternalError, ModelportError
from modelport.tensor.records import InferInput, InferRequest
from modelport.testing.fakes import spec_from_pbtxt
from support.models import finish, write_onnx

CONFIG = """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
"""


def _request(rows: int, start: float = 0.0) -> InferRequest:
    data = np.arange(start, start + rows * 4, dtype=np.float32).reshape(rows, 4)
    request = InferRequest("m", inputs=[InferInput("INPUT0", "FP32", data.shape, data)])
    request.batch_size = rows
    return request


def test_gather_concatenates_each_input_once_and_passes_a_lone_request_as_is() -> None:
    a, b = _request(1), _request(2, start=100.0)
    gathered = gather_inputs([a, b])
    np.testing.assert_array_equal(gathered["INPUT0"], np.concatenate([a.inputs[0].data, b.inputs[0].data]))
    assert gather_inputs([a])["INPUT0"] is a.inputs[0].data


def test_split_gives_each_request_its_rows_as_views() -> None:
    outputs = {"y": np.arange(12, dtype=np.float32).reshape(3, 4)}
    first, second = split_outputs("m", [_request(1), _request(2)], outputs)
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["y"], outputs["y"][:1])
    np.testing.assert_array_equal(second["y"], outputs["y"][1:])
    assert np.shares_memory(second["y"], outputs["y"])


def test_split_fails_the_batch_when_an_output_is_not_batch_major() -> None:
    outputs = {"x": np.zeros((4, 2), np.float32), "y": np.zeros((3, 2), np.float32)}
    results = split_outputs("m", [_request(1), _request(3)], outputs)
    assert len(results) == 2
    for result in results:
        assert isinstance(result, InternalError)
        assert result.message == "model 'm': output 'y' has 3 rows in its first dimension, the batch has 4"


def test_split_fails_the_batch_on_a_scalar_output() -> None:
    results = split_outputs("m", [_request(1), _request(1)], {"y": np.array(1.0, np.float32)})
    for result in results:
        assert isinstance(result, InternalError)
        assert result.message == "model 'm': output 'y' has no first dimension, the batch has 2 rows"


def test_a_lone_request_gets_any_output_shape() -> None:
    outputs = {"y": np.zeros((3, 2), np.float32)}
    [result] = split_outputs("m", [_request(2)], outputs)
    assert isinstance(result, dict) and result["y"] is outputs["y"]


def _column_sum_model(path: Path) -> Path:
    """OUTPUT0 = the sum of INPUT0's rows, kept as one row: its first dimension is not the batch."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["INPUT0", "AXES"], ["OUTPUT0"], keepdims=1)],
        "column_sum",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [1, 4])],
        initializer=[helper.make_tensor("AXES", TensorProto.INT64, [1], [0])],
    )
    model_file = path / "model.onnx"
    write_onnx(model_file, finish(graph))
    return model_file


def test_onnxruntime_batch_with_an_output_that_is_not_batch_major_fails_internal(tmp_path: Path) -> None:
    spec = spec_from_pbtxt(CONFIG, name="column_sum")
    placement = InstancePlacement(spec.instance_groups[0], 0, None, 1)
    instance = OnnxRuntimeBackend().create_instance(spec, _column_sum_model(tmp_path), placement)
    try:
        execution = instance.execute([_request(1), _request(1, start=4.0)])
        assert len(execution.results) == 2
        for result in execution.results:
            assert isinstance(result, InternalError) and result.code is ErrorCode.INTERNAL
            assert result.message == (
                "model 'column_sum': output 'OUTPUT0' has 1 rows in its first dimension, the batch has 2"
            )
        # A lone request is not split: it gets the output as the model made it.
        [alone] = instance.execute([_request(2)]).results
        assert isinstance(alone, dict)
        np.testing.assert_array_equal(alone["OUTPUT0"], [[4.0, 6.0, 8.0, 10.0]])
    finally:
        instance.close()


def test_a_string_that_is_not_utf8_fails_only_its_own_request(tmp_path: Path) -> None:
    """onnxruntime takes text: the request with bad bytes gets INVALID_ARG, the rest of the batch runs."""
    spec = spec_from_pbtxt(
        """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_STRING dims: [ 1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_STRING dims: [ 1 ] }]
""",
        name="text",
    )
    model_file = tmp_path / "text.onnx"
    write_onnx(model_file, finish(helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "text",
        [helper.make_tensor_value_info("INPUT0", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.STRING, ["N", 1])],
    )))  # fmt: skip
    instance = OnnxRuntimeBackend().create_instance(
        spec, model_file, InstancePlacement(spec.instance_groups[0], 0, None, 1)
    )

    def text(value: bytes) -> InferRequest:
        data = np.array([[value]], dtype=object)
        return InferRequest(model_name="text", inputs=[InferInput("INPUT0", "BYTES", (1, 1), data)])

    try:
        good, bad, other = instance.execute([text(b"ok"), text(b"\xff\xfe"), text("é".encode())]).results
        assert isinstance(bad, ModelportError) and bad.code is ErrorCode.INVALID_ARG
        assert "input 'INPUT0' of model 'text'" in bad.message and "UTF-8" in bad.message
        assert isinstance(good, dict) and good["OUTPUT0"].tolist() == [["ok"]]
        assert isinstance(other, dict) and other["OUTPUT0"].tolist() == [["é"]]
    finally:
        instance.close()
