"""What a stateful model receives beyond the client's inputs, and the checks on a sequence request.

Per request: the control tensors (START, END, READY, CORRID, with the config's false/true values)
and the implicit state of its sequence. For an empty slot of a direct-strategy batch: a filler
request whose READY is false, with zeros shaped like a real request of the batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from modelport.config.sequence import ControlSpec, SequenceBatchingSpec
from modelport.errors import InvalidInput
from modelport.tensor import datatype
from modelport.tensor.records import InferInput, InferRequest

CorrelationId = int | str
_UINT64_LIMIT = 1 << 64


def correlation_id(request: InferRequest, spec: SequenceBatchingSpec, model: str) -> CorrelationId:
    """The request's sequence ID, checked as Triton checks it (a CORRID control fixes its type)."""
    value = request.parameters.get("sequence_id")
    if value is None or value == 0 or value == "":
        raise InvalidInput(
            f"inference request to model '{model}' must specify a non-zero or non-empty correlation ID"
        )
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput("'sequence_id' must be an unsigned integer or a string")
    if isinstance(value, int) and not 0 < value < _UINT64_LIMIT:
        raise InvalidInput(f"'sequence_id' {value} is out of the range of an unsigned 64-bit integer")
    control = spec.control("CORRID")
    if control is not None:
        given = "BYTES" if isinstance(value, str) else "UINT64"
        if (given == "BYTES") != control.datatype.is_bytes:
            raise InvalidInput(
                f"sequence batching control 'CORRID' data-type is '{given}', but model '{model}' "
                f"expects '{control.datatype.name}'"
            )
    return value


def sequence_flags(request: InferRequest) -> tuple[bool, bool]:
    """(start, end) from the request's `sequence_start` / `sequence_end` parameters."""
    flags = []
    for key in ("sequence_start", "sequence_end"):
        value = request.parameters.get(key, False)
        if not isinstance(value, bool):
            raise InvalidInput(f"parameter '{key}' must be a boolean")
        flags.append(value)
    return flags[0], flags[1]


class SequenceInputs:
    """Builds the extra inputs of each request of a stateful model; arrays fixed at load are shared."""

    def __init__(self, spec: SequenceBatchingSpec, batching: bool) -> None:
        self._spec = spec
        self._shape = (1, 1) if batching else (1,)
        self._batching = batching
        self._flags = [c for c in spec.controls if c.kind != "CORRID"]
        self._corrid = spec.control("CORRID")
        # The flag inputs never change: built once, shared by every request (nothing writes to them).
        self._constants = {
            (c.name, v): _input(c.name, _filled(c, v, self._shape))
            for c in self._flags
            for v in (False, True)
        }

    def initial_state(self) -> dict[str, np.ndarray]:
        """A sequence's state at its start (with the batch dimension for a batching model)."""
        return {
            s.input_name: s.initial[np.newaxis] if self._batching else s.initial for s in self._spec.states
        }

    def for_request(
        self,
        request: InferRequest,
        start: bool,
        end: bool,
        corrid: CorrelationId,
        state: dict[str, np.ndarray],
    ) -> InferRequest:
        """A copy of `request` whose inputs also carry its controls and its sequence's state."""
        signals = {"START": start, "END": end, "READY": True}
        extra = [self._flag(c, signals[c.kind]) for c in self._flags]
        if self._corrid is not None:
            extra.append(self._corrid_input(corrid))
        extra += [_input(name, array) for name, array in state.items()]
        return dataclasses.replace(request, inputs=[*request.inputs, *extra])

    def filler(self, like: InferRequest) -> InferRequest:
        """A request for an empty slot: READY, START and END false, zeros shaped like `like`'s inputs
        (controls and state included), so the slots after it keep their places in the batch."""
        known = {c.name for c in self._spec.controls}
        inputs = [_input(i.name, _zeros_like(i.data)) for i in like.inputs if i.name not in known]
        inputs += [self._flag(c, False) for c in self._flags]
        if self._corrid is not None:
            inputs.append(self._corrid_input("" if self._corrid.datatype.is_bytes else 0))
        return InferRequest(model_name=like.model_name, model_version=like.model_version, inputs=inputs)

    def take_state(self, outputs: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> None:
        """Move the state outputs out of a request's outputs into its sequence's `state` (a model that
        does not produce one keeps the state it had)."""
        for s in self._spec.states:
            produced = outputs.pop(s.output_name, None)
            if produced is not None:
                state[s.input_name] = np.array(produced)

    def _flag(self, control: ControlSpec, value: bool) -> InferInput:
        return self._constants[(control.name, value)]

    def _corrid_input(self, corrid: CorrelationId) -> InferInput:
        control = self._corrid
        assert control is not None
        if control.datatype.is_bytes:
            text = corrid if isinstance(corrid, str) else str(corrid)
            array = np.full(self._shape, text.encode(), dtype=object)
        else:
            assert control.datatype.dtype is not None
            array = np.full(self._shape, int(corrid), dtype=control.datatype.dtype)
        return _input(control.name, array)


def _filled(control: ControlSpec, value: bool, shape: tuple[int, ...]) -> np.ndarray:
    assert control.datatype.dtype is not None
    array = np.full(shape, control.true_value if value else control.false_value, dtype=control.datatype.dtype)
    array.flags.writeable = False
    return array


def _zeros_like(data: np.ndarray) -> np.ndarray:
    if data.dtype == object:
        return np.full(data.shape, b"", dtype=object)
    return np.zeros(data.shape, dtype=data.dtype)


def _input(name: str, array: np.ndarray) -> InferInput:
    return InferInput(name, _datatype_name(array), tuple(array.shape), array)


def _datatype_name(array: np.ndarray) -> str:
    return "BYTES" if array.dtype == object else datatype.from_numpy(array.dtype).name


def signature(request: InferRequest) -> Any:
    """What must be equal for requests to share a batch: every input's name and shape."""
    return tuple((i.name, i.shape[1:] if i.shape else ()) for i in request.inputs)
