"""The `sequence_batching` block of a model config as frozen records, and its load-time checks.

A stateful model receives, besides the client's inputs, control tensors the server fills for every
slot of a batch (START, END, READY, CORRID) and, with implicit state, the state it produced on the
previous request of the same sequence. Everything here is decided once, when the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto, model_config_pb2
from modelport.tensor import datatype
from modelport.tensor.bytes_codec import decode_bytes
from modelport.tensor.datatype import DataType

# Triton's default when max_sequence_idle_microseconds is 0 or absent.
DEFAULT_IDLE_US = 1_000_000
# Folder of a model (beside config.pbtxt) holding initial-state data files.
INITIAL_STATE_FOLDER = "initial_state"

_Kind = model_config_pb2.ModelSequenceBatching.Control.Kind
_KINDS = {
    _Kind.Value("CONTROL_SEQUENCE_START"): "START",
    _Kind.Value("CONTROL_SEQUENCE_READY"): "READY",
    _Kind.Value("CONTROL_SEQUENCE_END"): "END",
    _Kind.Value("CONTROL_SEQUENCE_CORRID"): "CORRID",
}
_CORRID_TYPES = ("TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING")


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """One control input: its tensor name, what it signals, and its datatype and false/true values."""

    name: str
    kind: str  # "START" | "END" | "READY" | "CORRID"
    datatype: DataType
    false_value: object = None  # for START / END / READY
    true_value: object = None


@dataclass(frozen=True, slots=True)
class StateSpec:
    """One implicit state: fed to `input_name`, taken back from `output_name` after each request."""

    input_name: str
    output_name: str
    datatype: DataType
    dims: tuple[int, ...]
    initial: np.ndarray  # the state at a sequence's start, without the batch dimension


@dataclass(frozen=True, slots=True)
class SequenceBatchingSpec:
    strategy: str  # "direct" | "oldest"
    max_sequence_idle_us: int
    controls: tuple[ControlSpec, ...]
    states: tuple[StateSpec, ...]
    max_queue_delay_us: int = 0
    minimum_slot_utilization: float = 0.0  # direct
    max_candidate_sequences: int = 0  # oldest; 0 = max_batch_size
    preferred_batch_sizes: tuple[int, ...] = ()  # oldest
    preserve_ordering: bool = False  # oldest

    def control(self, kind: str) -> ControlSpec | None:
        return next((c for c in self.controls if c.kind == kind), None)

    @property
    def extra_input_names(self) -> tuple[str, ...]:
        """Inputs the model takes that clients never send: the controls and the state inputs."""
        return tuple(c.name for c in self.controls) + tuple(s.input_name for s in self.states)

    @property
    def state_output_names(self) -> tuple[str, ...]:
        return tuple(s.output_name for s in self.states)


def sequence_batching(config: ModelConfigProto, model_dir: Path | None) -> SequenceBatchingSpec | None:
    """The block as records (None without one); raises InvalidInput naming what is wrong with it."""
    if not config.HasField("sequence_batching"):
        return None
    sb = config.sequence_batching
    controls = tuple(_control(entry.name, entry.control[0]) for entry in sb.control_input)
    states = tuple(_state(config.name, s, model_dir) for s in sb.state)
    common = {
        "max_sequence_idle_us": sb.max_sequence_idle_microseconds or DEFAULT_IDLE_US,
        "controls": controls,
        "states": states,
    }
    if sb.HasField("oldest"):
        oldest = sb.oldest
        return SequenceBatchingSpec(
            "oldest",
            max_queue_delay_us=oldest.max_queue_delay_microseconds,
            max_candidate_sequences=oldest.max_candidate_sequences,
            preferred_batch_sizes=tuple(sorted(oldest.preferred_batch_size)),
            preserve_ordering=oldest.preserve_ordering,
            **common,  # type: ignore[arg-type]
        )
    direct = sb.direct
    return SequenceBatchingSpec(
        "direct",
        max_queue_delay_us=direct.max_queue_delay_microseconds,
        minimum_slot_utilization=direct.minimum_slot_utilization,
        **common,  # type: ignore[arg-type]
    )


def hidden_tensor_names(config: ModelConfigProto) -> tuple[set[str], set[str]]:
    """The model inputs and outputs that the sequence batcher feeds and takes (never the client's)."""
    if not config.HasField("sequence_batching"):
        return set(), set()
    sb = config.sequence_batching
    inputs = {c.name for c in sb.control_input} | {s.input_name for s in sb.state}
    return inputs, {s.output_name for s in sb.state}


def sequence_problems(config: ModelConfigProto) -> list[str]:
    """What is wrong with a config's sequence_batching block, one line per problem."""
    if not config.HasField("sequence_batching"):
        return []
    sb = config.sequence_batching
    problems: list[str] = []
    if sb.iterative_sequence:
        problems.append("sequence_batching.iterative_sequence is not supported by modelport")
    declared = {t.name for t in config.input}
    seen_kinds: set[str] = set()
    for entry in sb.control_input:
        problems += _control_problems(config.name, entry, seen_kinds)
        if entry.name in declared:
            problems.append(
                f"sequence batching control input '{entry.name}' is also declared as a model input"
            )
    for state in sb.state:
        problems += _state_problems(state, declared)
    if sb.HasField("oldest"):
        for size in sb.oldest.preferred_batch_size:
            if size < 1 or (config.max_batch_size > 0 and size > config.max_batch_size):
                problems.append(
                    f"sequence_batching.oldest.preferred_batch_size {size} must be between 1 and "
                    f"max_batch_size {config.max_batch_size}"
                )
    return problems


def _control_problems(
    model: str, entry: model_config_pb2.ModelSequenceBatching.ControlInput, seen: set[str]
) -> list[str]:
    where = f"sequence batching control input '{entry.name}' of model '{model}'"
    if not entry.name:
        return ["sequence batching control input is missing a name"]
    if len(entry.control) != 1:
        return [f"{where} must have exactly one control, found {len(entry.control)}"]
    control = entry.control[0]
    kind = _KINDS[control.kind]
    if kind in seen:
        return [f"sequence batching specifies multiple CONTROL_SEQUENCE_{kind} tensors for model '{model}'"]
    seen.add(kind)
    if kind == "CORRID":
        name = model_config_pb2.DataType.Name(control.data_type)
        if name not in _CORRID_TYPES:
            return [f"{where}: CONTROL_SEQUENCE_CORRID data_type must be one of {', '.join(_CORRID_TYPES)}"]
        return []
    pairs = [
        len(values)
        for values in (control.int32_false_true, control.fp32_false_true, control.bool_false_true)
        if values
    ]
    if len(pairs) != 1:
        return [f"{where} must specify exactly one of int32_false_true, fp32_false_true or bool_false_true"]
    if pairs[0] != 2:
        return [f"{where}: the false/true values must have exactly 2 entries, found {pairs[0]}"]
    return []


def _state_problems(state: model_config_pb2.ModelSequenceBatching.State, declared: set[str]) -> list[str]:
    where = f"state '{state.input_name}'"
    problems: list[str] = []
    if not state.input_name or not state.output_name:
        problems.append("a sequence batching state needs input_name and output_name")
    if state.input_name in declared:
        problems.append(f"{where} is also declared as a model input")
    if state.data_type == model_config_pb2.TYPE_INVALID:
        problems.append(f"{where}: data_type must be specified")
    if any(d == 0 or d < -1 for d in state.dims):
        problems.append(f"{where}: dims must be -1 or >= 1, got {list(state.dims)}")
    if len(state.initial_state) > 1:
        problems.append(
            f"initial_state field for state input '{state.input_name}' must contain exactly one or zero "
            f"element. Found '{len(state.initial_state)}' elements."
        )
    if state.use_growable_memory:
        problems.append(
            f"{where}: use_growable_memory needs KIND_GPU instances, which modelport does not provide"
        )
    return problems


def _control(name: str, control: model_config_pb2.ModelSequenceBatching.Control) -> ControlSpec:
    kind = _KINDS[control.kind]
    if kind == "CORRID":
        return ControlSpec(
            name, kind, datatype.BY_CONFIG_NAME[model_config_pb2.DataType.Name(control.data_type)]
        )
    if control.int32_false_true:
        values: list[object] = list(control.int32_false_true)
        dtype = datatype.BY_NAME["INT32"]
    elif control.fp32_false_true:
        values, dtype = list(control.fp32_false_true), datatype.FP32
    else:
        values, dtype = list(control.bool_false_true), datatype.BOOL
    return ControlSpec(name, kind, dtype, values[0], values[1])


def _state(
    model: str, state: model_config_pb2.ModelSequenceBatching.State, model_dir: Path | None
) -> StateSpec:
    dtype = datatype.BY_CONFIG_NAME[model_config_pb2.DataType.Name(state.data_type)]
    dims = tuple(state.dims)
    if state.initial_state:
        initial = _initial_state(model, state, dtype, model_dir)
    else:
        # Variable dimensions start at 1, as in Triton; the data is zeros (empty strings for BYTES).
        shape = tuple(1 if d == -1 else d for d in dims)
        initial = _zeros(dtype, shape)
    return StateSpec(state.input_name, state.output_name, dtype, dims, initial)


def _initial_state(
    model: str,
    state: model_config_pb2.ModelSequenceBatching.State,
    dtype: DataType,
    model_dir: Path | None,
) -> np.ndarray:
    init = state.initial_state[0]
    where = f"state input '{state.input_name}' of model '{model}'"
    if init.data_type != state.data_type:
        raise InvalidInput(
            f"The data type used for 'initial_state' field of state '{state.input_name}' does not match "
            f"the state data type."
        )
    if not init.name:
        raise InvalidInput(
            f"Field 'name' must be set when using initial_state for state input '{state.input_name}'."
        )
    if len(init.dims) != len(state.dims):
        raise InvalidInput(
            f"Number of dimensions in 'initial_state' doesn't match the size of 'state' dimensions for "
            f"state input '{state.input_name}'. {len(init.dims)} != {len(state.dims)}"
        )
    for own, declared in zip(init.dims, state.dims, strict=True):
        if own == -1:
            raise InvalidInput(
                f"'initial_state' field for state input name '{state.input_name}' contains variable "
                "dimensions."
            )
        if declared != -1 and own != declared:
            raise InvalidInput(
                f"'initial_state' dim for input name '{state.input_name}' doesn't match 'state' dim "
                f"description. {own} != {declared}"
            )
    shape = tuple(init.dims)
    which = init.WhichOneof("state_data")
    if which == "data_file":
        return _state_from_file(where, init.data_file, dtype, shape, model_dir)
    if which != "zero_data":
        raise InvalidInput(f"initial_state setting expects state '{state.input_name}' to have state_data set")
    return _zeros(dtype, shape)


def _state_from_file(
    where: str, file_name: str, dtype: DataType, shape: tuple[int, ...], model_dir: Path | None
) -> np.ndarray:
    if model_dir is None or Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        raise InvalidInput(
            f"{where}: initial_state data_file '{file_name}' must name a file in '{INITIAL_STATE_FOLDER}/'"
        )
    path = model_dir / INITIAL_STATE_FOLDER / file_name
    try:
        raw = path.read_bytes()
    except OSError:
        raise InvalidInput(
            f"{where}: unable to read initial_state data_file '{INITIAL_STATE_FOLDER}/{file_name}'"
        ) from None
    if dtype.is_bytes:  # the file holds the serialized strings, each with its 4-byte length
        strings = decode_bytes(raw, int(np.prod(shape)), f"the initial_state data_file of {where}")
        return strings.reshape(shape)
    assert dtype.dtype is not None
    needed = int(np.prod(shape)) * dtype.itemsize
    if len(raw) < needed:
        raise InvalidInput(
            f"initial_state setting expects {needed} bytes, but the data provided from {file_name} only has "
            f"{len(raw)} bytes."
        )
    array: np.ndarray = np.frombuffer(raw[:needed], dtype=dtype.dtype).reshape(shape).copy()
    return array


def _zeros(dtype: DataType, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.is_bytes:
        return np.full(shape, b"", dtype=object)
    if dtype.dtype is None:
        raise InvalidInput(f"sequence batching state of type {dtype.config_name} is not supported")
    return np.zeros(shape, dtype=dtype.dtype)
