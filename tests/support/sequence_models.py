"""Stateful (sequence) test models: Python models that show what the sequence batcher feeds them,
Python equivalents of Triton's simple_sequence examples, and ONNX models with implicit state."""

from __future__ import annotations

from pathlib import Path

from onnx import TensorProto, helper

from support.models import finish, write_onnx

# OUTPUT = READY * (INPUT + START [+ END * CORRID]); every control read from the request's inputs.
SIMPLE_SEQUENCE_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


def _value(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = _value(request, "INPUT").astype(np.int64)
            ready = _value(request, "READY").astype(np.int64)
            total = value + _value(request, "START")
            end, corrid = _value(request, "END"), _value(request, "CORRID")
            if end is not None and corrid is not None:
                total = total + end * corrid.astype(np.int64)
            out = (ready * total).astype(np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", out)]))
        return responses
"""

# An accumulator kept by the model itself, keyed by the (string) correlation ID it reads: START
# resets it to INPUT, later requests add INPUT, END adds the ID's integer value.
STRING_DYNA_SEQUENCE_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            if not get("READY").reshape(-1)[0]:
                zero = pb_utils.Tensor("OUTPUT", np.zeros((1, 1), np.int32))
                responses.append(pb_utils.InferenceResponse([zero]))
                continue
            corrid = get("CORRID").reshape(-1)[0]
            corrid = corrid.decode() if isinstance(corrid, bytes) else str(corrid)
            value = int(get("INPUT").reshape(-1)[0])
            total = value if get("START").reshape(-1)[0] else self.sums.get(corrid, 0) + value
            if get("END").reshape(-1)[0]:
                total += int(corrid)
                self.sums.pop(corrid, None)
            else:
                self.sums[corrid] = total
            out = np.full((1, 1), total, np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", out)]))
        return responses
"""

# Shows the batch: per request its controls, its place in the execute call and the call's size.
CONTROL_ECHO_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for index, request in enumerate(requests):
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            row = [get("START"), get("END"), get("READY"), get("CORRID").astype(np.float32)]
            controls = np.concatenate([np.asarray(v, np.float32).reshape(1, 1) for v in row], axis=1)
            place = np.array([[index, len(requests)]], np.int32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("CONTROLS", controls), pb_utils.Tensor("PLACE", place),
                pb_utils.Tensor("ECHO", get("INPUT")),
            ]))
        return responses
"""

# Implicit state kept by the server: OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT.
STATE_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            state = pb_utils.get_input_tensor_by_name(request, "INPUT_STATE").as_numpy()
            total = state + value
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT", total), pb_utils.Tensor("OUTPUT_STATE", total),
            ]))
        return responses
"""


def _int_control(name: str, kind: str) -> str:
    return f'{{ name: "{name}" control [ {{ kind: {kind} int32_false_true: [ 0, 1 ] }} ] }}'


def _sequence_block(strategy: str, corrid: str | None, idle_us: int, end: bool, extra: str = "") -> str:
    controls = [
        _int_control("START", "CONTROL_SEQUENCE_START"),
        _int_control("READY", "CONTROL_SEQUENCE_READY"),
    ]
    if end:
        controls.append(_int_control("END", "CONTROL_SEQUENCE_END"))
    if corrid:
        controls.append(
            f'{{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: {corrid} }} ] }}'
        )
    return (
        f"sequence_batching {{\n  max_sequence_idle_microseconds: {idle_us}\n  {strategy}\n"
        f"  control_input [ {', '.join(controls)} ]\n{extra}}}\n"
    )


def _write_python(
    repo: Path, name: str, source: str, io: str, block: str, max_batch_size: int = 8, instances: int = 1
) -> Path:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(source)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n{io}{block}'
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
    )
    return folder


_INT_IO = (
    'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
)


def write_simple_sequence(
    repo: Path,
    name: str = "simple_sequence",
    *,
    strategy: str = "direct { }",
    corrid: str | None = None,
    idle_us: int = 5_000_000,
    instances: int = 1,
    max_batch_size: int = 8,
) -> Path:
    """Triton's simple_sequence (no CORRID: any ID type) or, with `corrid`, simple_dyna_sequence."""
    block = _sequence_block(strategy, corrid, idle_us, end=corrid is not None)
    return _write_python(repo, name, SIMPLE_SEQUENCE_PY, _INT_IO, block, max_batch_size, instances)


def write_string_dyna_sequence(repo: Path, name: str = "simple_string_dyna_sequence") -> Path:
    block = _sequence_block("direct { }", "TYPE_STRING", 5_000_000, end=True)
    return _write_python(repo, name, STRING_DYNA_SEQUENCE_PY, _INT_IO, block)


def write_control_echo(repo: Path, name: str, strategy: str, *, slots: int = 4, instances: int = 1) -> Path:
    io = (
        'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "CONTROLS" data_type: TYPE_FP32 dims: [ 4 ] },'
        ' { name: "PLACE" data_type: TYPE_INT32 dims: [ 2 ] },'
        ' { name: "ECHO" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    )
    block = _sequence_block(strategy, "TYPE_UINT64", 5_000_000, end=True)
    return _write_python(repo, name, CONTROL_ECHO_PY, io, block, slots, instances)


def write_python_state_model(repo: Path, name: str = "py_state", *, idle_us: int = 5_000_000) -> Path:
    io = (
        'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    )
    state = (
        '  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_FP32 dims: [ 2 ]\n'
        '    initial_state { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true name: "zeros" } } ]\n'
    )
    block = _sequence_block("oldest { max_candidate_sequences: 4 }", None, idle_us, end=True, extra=state)
    return _write_python(repo, name, STATE_PY, io, block, max_batch_size=4)


def write_onnx_state_model(repo: Path, name: str = "onnx_state") -> Path:
    """An ONNX accumulator with implicit state and a START control it ignores (state resets are the
    server's): OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT. Its config lists no inputs or outputs, so
    auto-complete must leave the control and state tensors out."""
    shape: list[int | str] = ["batch", 3]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT", "INPUT_STATE"], ["SUM"]),
            helper.make_node("Identity", ["SUM"], ["OUTPUT"]),
            helper.make_node("Identity", ["SUM"], ["OUTPUT_STATE"]),
            helper.make_node("Identity", ["START"], ["START_SEEN"]),
        ],
        name,
        [
            helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("INPUT_STATE", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("START", TensorProto.INT32, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("OUTPUT_STATE", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("START_SEEN", TensorProto.INT32, ["batch", 1]),
        ],
    )
    folder = repo / name
    write_onnx(folder / "1" / "model.onnx", finish(graph))
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 4\n'
        "sequence_batching {\n  direct { }\n"
        f"  control_input [ {_int_control('START', 'CONTROL_SEQUENCE_START')} ]\n"
        '  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE"'
        " data_type: TYPE_FP32 dims: [ 3 ] } ]\n"
        "}\n"
    )
    return folder
