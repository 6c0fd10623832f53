"""Validates a decoded request against its model's config, once, before it is queued.

Checks input names, datatypes, shapes and the batch dimension, and requested outputs, with
Triton's messages; applies `reshape` so the backend sees the shapes it expects.
"""

from __future__ import annotations

from modelport.config.spec import ModelSpec, TensorSpec
from modelport.errors import InvalidInput, with_request_id
from modelport.tensor.records import InferInput, InferRequest


def normalize_request(request: InferRequest, spec: ModelSpec) -> None:
    """Validate `request` in place and set its batch size; raise InvalidInput on the first problem."""
    try:
        tensors = _input_tensors(request, spec)
        request.batch_size = _batch_size(request, spec)
        for inp, tensor in zip(request.inputs, tensors, strict=True):
            _check_input(inp, tensor, spec)
        for out in request.outputs:
            if spec.output(out.name) is None:
                raise InvalidInput(f"unexpected inference output '{out.name}' for model '{spec.name}'")
    except InvalidInput as exc:
        raise InvalidInput(with_request_id(request.id, exc.message)) from None


def _input_tensors(request: InferRequest, spec: ModelSpec) -> list[TensorSpec]:
    """The config of each input of `request`, in order; every required input must be there."""
    given = [i.name for i in request.inputs]
    if len(set(given)) != len(given):
        raise InvalidInput(f"input names must be unique in a request for model '{spec.name}'")
    tensors = []
    for name in given:
        tensor = spec.input(name)
        if tensor is None:
            raise InvalidInput(f"unexpected inference input '{name}' for model '{spec.name}'")
        tensors.append(tensor)
    if len(given) < len(spec.inputs):
        _check_required(given, spec)
    return tensors


def _check_required(given: list[str], spec: ModelSpec) -> None:
    required = [t.name for t in spec.inputs if not t.optional]
    missing = [name for name in required if name not in given]
    if missing:
        raise InvalidInput(
            f"expected {len(required)} inputs but got {len(given)} inputs for model '{spec.name}'. "
            f"Got input(s) {given}, but missing required input(s) {missing}. "
            f"Please provide all required input(s)."
        )


def _batch_size(request: InferRequest, spec: ModelSpec) -> int:
    if spec.max_batch_size == 0:
        return 1
    batch: int | None = None
    for inp in request.inputs:
        tensor = spec.input(inp.name)
        if tensor is not None and tensor.is_shape_tensor:
            continue
        if not inp.shape:
            raise InvalidInput(
                f"input '{inp.name}' has no batch dimension but model '{spec.name}' supports batching "
                f"(max_batch_size {spec.max_batch_size}); its shape must start with the batch size"
            )
        if batch is None:
            batch = inp.shape[0]
        elif inp.shape[0] != batch:
            raise InvalidInput(
                f"input '{inp.name}' batch size does not match other inputs for '{spec.name}'"
            )
    batch = batch if batch is not None else 1
    if batch < 1 or batch > spec.max_batch_size:
        raise InvalidInput(
            f"inference request batch-size must be <= {spec.max_batch_size} for '{spec.name}'"
            if batch > spec.max_batch_size
            else f"inference request batch-size must be >= 1 for '{spec.name}'"
        )
    return batch


def _check_input(inp: InferInput, tensor: TensorSpec, spec: ModelSpec) -> None:
    if inp.datatype != tensor.datatype.name:
        raise InvalidInput(
            f"inference input '{inp.name}' data-type is '{inp.datatype}', but model '{spec.name}' "
            f"expects '{tensor.datatype.name}'"
        )
    batching = spec.max_batch_size > 0 and not tensor.is_shape_tensor
    shape = inp.shape[1:] if batching else inp.shape
    if shape != tensor.dims and not _shape_matches(shape, tensor.dims):
        expected = [-1, *tensor.dims] if batching else list(tensor.dims)
        note = (
            " NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension "
            "to be prepended to each input shape. If you want to specify the full shape including "
            "the batch dim in your input dims config, try setting max_batch_size to zero. See the "
            "model configuration docs for more info on max_batch_size."
            if batching
            else ""
        )
        raise InvalidInput(
            f"unexpected shape for input '{inp.name}' for model '{spec.name}'. "
            f"Expected {_fmt(expected)}, got {_fmt(list(inp.shape))}.{note}"
        )
    if tensor.reshape is not None:
        inp.data = inp.data.reshape(_reshaped(inp, tensor, batching))


def _shape_matches(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    return len(shape) == len(dims) and all(d == -1 or d == s for s, d in zip(shape, dims, strict=True))


def _reshaped(inp: InferInput, tensor: TensorSpec, batching: bool) -> tuple[int, ...]:
    assert tensor.reshape is not None
    shape = inp.shape[1:] if batching else inp.shape
    variable = iter(s for s, d in zip(shape, tensor.dims, strict=True) if d == -1)
    target = tuple(next(variable, 1) if d == -1 else d for d in tensor.reshape)
    return (inp.shape[0], *target) if batching else target


def _fmt(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
