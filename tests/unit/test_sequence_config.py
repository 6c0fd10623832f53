"""The sequence_batching block: its records, its load-time checks, initial state, and the extra
tensors (controls, states) a stateful model gets besides the client's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt
from modelport.config.sequence import hidden_tensor_names
from modelport.config.spec import build_spec
from modelport.config.validation import validate
from modelport.errors import InvalidInput
from modelport.scheduling.sequence_inputs import SequenceInputs, correlation_id, sequence_flags
from modelport.tensor.bytes_codec import encode_bytes
from modelport.tensor.records import InferInput, InferRequest

BASE = """
name: "seq"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 5, 6 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
"""


READY = "CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ]"


def _controls(*entries: tuple[str, str]) -> str:
    listed = ", ".join(f'{{ name: "{name}" control [ {{ kind: {body} }} ] }}' for name, body in entries)
    return f"control_input [ {listed} ]"


def _config(block: str) -> object:
    config = parse_pbtxt(BASE + f"sequence_batching {{ {block} }}", "seq/config.pbtxt")
    apply_defaults(config, gpu_count=0)
    return config


def _problems(block: str) -> str:
    with pytest.raises(InvalidInput) as info:
        validate(_config(block), "seq/config.pbtxt")  # type: ignore[arg-type]
    return info.value.message


def test_records_of_a_direct_block_with_defaults() -> None:
    spec = build_spec(_config(CONTROLS))  # type: ignore[arg-type]
    sb = spec.sequence_batching
    assert sb is not None
    assert sb.strategy == "direct"
    assert sb.max_sequence_idle_us == 1_000_000  # Triton's default
    start = sb.control("START")
    assert (
        start is not None
        and start.datatype.name == "FP32"
        and (start.false_value, start.true_value) == (0, 1)
    )
    assert spec.model_input_names == ("INPUT", "START", "END", "READY", "CORRID")
    assert spec.model_output_names == ("OUTPUT",)


def test_records_of_an_oldest_block() -> None:
    block = (
        "oldest { max_candidate_sequences: 3 preferred_batch_size: [ 4, 2 ] max_queue_delay_microseconds: 7 }"
    )
    sb = build_spec(_config(block)).sequence_batching  # type: ignore[arg-type]
    assert sb is not None
    assert (sb.strategy, sb.max_candidate_sequences, sb.preferred_batch_sizes, sb.max_queue_delay_us) == (
        "oldest",
        3,
        (2, 4),
        7,
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            'control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START } ] } ]',
            "must specify exactly one of int32_false_true, fp32_false_true or bool_false_true",
        ),
        (
            _controls(("S", "CONTROL_SEQUENCE_START int32_false_true: [ 1 ]")),
            "the false/true values must have exactly 2 entries",
        ),
        (
            _controls(("C", "CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32")),
            "CONTROL_SEQUENCE_CORRID data_type must be one of",
        ),
        (
            _controls(("INPUT", READY)),
            "control input 'INPUT' is also declared as a model input",
        ),
        (
            _controls(("A", READY), ("B", READY)),
            "multiple CONTROL_SEQUENCE_READY tensors",
        ),
        ("iterative_sequence: true", "iterative_sequence is not supported"),
        (
            "oldest { preferred_batch_size: [ 9 ] }",
            "preferred_batch_size 9 must be between 1 and max_batch_size 4",
        ),
        (
            'state [ { input_name: "S" output_name: "T" dims: [ 1 ] } ]',
            "state 'S': data_type must be specified",
        ),
    ],
)
def test_load_time_problems(block: str, message: str) -> None:
    assert message in _problems(block)


STATE = 'state [ {{ input_name: "IS" output_name: "OS" data_type: {dtype} dims: [ {dims} ] {initial} }} ]'


def _state_spec(dtype: str, dims: str, initial: str = "", model_dir: Path | None = None) -> np.ndarray:
    config = _config(STATE.format(dtype=dtype, dims=dims, initial=initial))
    sb = build_spec(config, model_dir).sequence_batching  # type: ignore[arg-type]
    assert sb is not None
    return sb.states[0].initial


def test_initial_state_defaults_to_zeros_with_variable_dims_at_one() -> None:
    initial = _state_spec("TYPE_FP32", "-1, 3")
    assert initial.shape == (1, 3) and initial.dtype == np.float32 and not initial.any()


def test_initial_state_from_a_data_file(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "start.bin").write_bytes(np.arange(4, dtype="<i4").tobytes())
    initial = _state_spec(
        "TYPE_INT32",
        "2, 2",
        'initial_state { data_type: TYPE_INT32 dims: [ 2, 2 ] data_file: "start.bin" name: "s" }',
        tmp_path,
    )
    assert initial.tolist() == [[0, 1], [2, 3]]


def test_string_initial_state_from_a_data_file(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "words").write_bytes(encode_bytes(np.array([b"a", b"bc"], dtype=object)))
    initial = _state_spec(
        "TYPE_STRING",
        "2",
        'initial_state { data_type: TYPE_STRING dims: [ 2 ] data_file: "words" name: "w" }',
        tmp_path,
    )
    assert initial.tolist() == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        (
            'initial_state { data_type: TYPE_INT32 dims: [ 2 ] zero_data: true name: "z" }',
            "does not match the state",
        ),
        ("initial_state { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true }", "Field 'name' must be set"),
        (
            'initial_state { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true name: "z" }',
            "doesn't match 'state' dim",
        ),
        (
            'initial_state { data_type: TYPE_FP32 dims: [ 2 ] data_file: "../x" name: "z" }',
            "must name a file in",
        ),
        (
            'initial_state { data_type: TYPE_FP32 dims: [ 2 ] data_file: "missing" name: "z" }',
            "unable to read",
        ),
    ],
)
def test_initial_state_problems(tmp_path: Path, initial: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        _state_spec("TYPE_FP32", "2", initial, tmp_path)


def test_hidden_tensor_names_are_controls_and_states() -> None:
    config = _config(CONTROLS + STATE.format(dtype="TYPE_FP32", dims="1", initial=""))
    assert hidden_tensor_names(config) == ({"START", "END", "READY", "CORRID", "IS"}, {"OS"})  # type: ignore[arg-type]


def _request(**parameters: object) -> InferRequest:
    data = np.ones((1, 1), np.int32)
    return InferRequest(
        "seq", inputs=[InferInput("INPUT", "INT32", (1, 1), data)], parameters=dict(parameters)
    )


def test_control_values_for_a_request_and_a_filler() -> None:
    sb = build_spec(_config(CONTROLS)).sequence_batching  # type: ignore[arg-type]
    assert sb is not None
    inputs = SequenceInputs(sb, batching=True)
    request = inputs.for_request(_request(), start=True, end=False, corrid=42, state={})
    by_name = {i.name: i.data for i in request.inputs}
    assert by_name["START"].dtype == np.float32 and by_name["START"].tolist() == [[1.0]]
    assert by_name["END"].tolist() == [[5]]
    assert by_name["READY"].tolist() == [[True]]
    assert by_name["CORRID"].dtype == np.uint64 and by_name["CORRID"].tolist() == [[42]]
    filler = {i.name: i.data for i in inputs.filler(request).inputs}
    assert filler["READY"].tolist() == [[False]] and filler["CORRID"].tolist() == [[0]]
    assert filler["INPUT"].tolist() == [[0]]


def test_correlation_ids_and_flags_are_checked() -> None:
    sb = build_spec(_config(CONTROLS)).sequence_batching  # type: ignore[arg-type]
    assert sb is not None
    assert correlation_id(_request(sequence_id=7), sb, "seq") == 7
    for bad in (None, 0, ""):
        with pytest.raises(InvalidInput, match="must specify a non-zero or non-empty correlation ID"):
            correlation_id(_request(sequence_id=bad), sb, "seq")
    with pytest.raises(InvalidInput, match="unsigned integer or a string"):
        correlation_id(_request(sequence_id=1.5), sb, "seq")
    with pytest.raises(InvalidInput, match="out of the range"):
        correlation_id(_request(sequence_id=-3), sb, "seq")
    assert sequence_flags(_request(sequence_start=True)) == (True, False)
    with pytest.raises(InvalidInput, match="'sequence_end' must be a boolean"):
        sequence_flags(_request(sequence_end="yes"))
