"""Triton's generate extension JSON <-> InferRequest / InferResponse, and its Server-Sent Events framing.

A request is one flat JSON object. A key that names a model input becomes that input: a scalar or
a list, given the model's datatype and a shape worked out from the element count and the input's
dims (batch dimension included), as Triton does. Any other key becomes a request parameter
(string, integer, float or boolean). The object under "parameters" is read the same way, so it
may carry inputs too. A response is one flat object: "id" (when the request had one),
"model_name", "model_version", the response parameters and every output by name (a scalar when
it has one element, else a flat list; BYTES as strings), keys sorted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from modelport.codecs.json_v2 import json_data, json_numbers, parse_json_object
from modelport.config.spec import ModelSpec, TensorSpec
from modelport.errors import InvalidInput, ModelportError, Unsupported, with_request_id
from modelport.tensor.records import InferInput, InferRequest, InferResponse

PARAMETERS = "parameters"  # the one nested keyword of the request schema
SSE_PREFIX = b"data: "
SSE_SUFFIX = b"\n\n"
# The answer of /generate when a (decoupled) model sends no response or more than one.
NOT_ONE_RESPONSE = (
    "generate expects model to produce exactly 1 response, use generate stream for model that "
    "generates various number of responses"
)
# Triton's limit on nested arrays in a tensor's JSON data.
_MAX_JSON_DEPTH = 100
_BYTES_PREFIX = 4  # the length prefix of each serialized BYTES element


def decode_request(
    body: bytes | bytearray, spec: ModelSpec, model_version: str = "", max_input_size: int = 0
) -> InferRequest:
    """A generate request body as an InferRequest for `spec` (all outputs requested).

    `max_input_size` (bytes, 0 = no limit) bounds the tensors' total size, as
    --http-max-input-size does in Triton.
    """
    doc = parse_json_object(body)
    request = InferRequest(model_name=spec.name, model_version=model_version)
    if "id" in doc:
        if not isinstance(doc["id"], str):
            raise InvalidInput("Unable to parse 'id': attempt to access JSON non-string as string")
        request.id = doc["id"]
    _Converter(spec, request, max_input_size).convert(doc, nested=True)
    return request


class _Converter:
    """Turns the members of a generate request object into the request's inputs and parameters."""

    def __init__(self, spec: ModelSpec, request: InferRequest, max_input_size: int) -> None:
        self._spec = spec
        self._request = request
        self._limit = max_input_size
        self._consumed = 0  # bytes of the inputs converted so far
        self._names: set[str] = set()

    def convert(self, doc: dict[str, Any], nested: bool) -> None:
        for key, value in doc.items():
            if nested and key == PARAMETERS:
                self._parameters(value)
            elif (tensor := self._spec.input(key)) is not None:
                self._input(tensor, value)
            else:
                self._request.parameters[key] = _parameter(key, value)

    def _parameters(self, value: Any) -> None:
        if self._spec.input(PARAMETERS) is not None:
            raise InvalidInput(f"Keyword '{PARAMETERS}' for nested schema also given as input tensor name")
        if not isinstance(value, dict):
            raise InvalidInput(
                f"Expected JSON object for keyword: '{PARAMETERS}': "
                "attempt to access JSON non-object as object"
            )
        try:
            self.convert(value, nested=False)
        except ModelportError as exc:
            raise type(exc)(f"Converting keyword: '{PARAMETERS}': {exc.message}", exc.code) from None

    def _input(self, tensor: TensorSpec, value: Any) -> None:
        name = tensor.name
        if name in self._names:
            raise InvalidInput(with_request_id(self._request.id, f"input '{name}' already exists in request"))
        self._names.add(name)
        dtype = tensor.datatype
        count = len(value) if isinstance(value, list) else 1
        strings = _strings(value) if dtype.is_bytes else None
        size = sum(len(s) + _BYTES_PREFIX for s in strings) if strings is not None else count * dtype.itemsize
        if size and self._limit and self._consumed + size > self._limit:
            raise InvalidInput(
                f"request size of {self._consumed} bytes with input '{name}' of size {size} bytes exceeds "
                f"the maximum allowed input size of {self._limit}. Use --http-max-input-size to increase "
                "the limit."
            )
        self._consumed += size
        shape = _shape(self._template(tensor), count, name)
        if strings is not None:
            data = np.empty(len(strings), dtype=object)
            data[:] = strings
        else:
            data = _numbers(value, tensor)
        if data.size != count:
            raise InvalidInput("Unable to parse 'data': Shape does not match true shape of 'data' field")
        self._request.inputs.append(InferInput(name, dtype.name, shape, data.reshape(shape)))

    def _template(self, tensor: TensorSpec) -> tuple[int, ...]:
        """The input's shape as model metadata shows it: -1 for the batch dimension and variable dims."""
        return (-1, *tensor.dims) if self._spec.max_batch_size > 0 else tensor.dims


def _parameter(key: str, value: Any) -> str | int | float | bool:
    # bool first: JSON true/false are Python ints too. Integers past int64 become doubles, as in Triton.
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else float(value)
    if isinstance(value, float):
        return value
    raise InvalidInput(f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or 'string'.")


def _shape(template: tuple[int, ...], count: int, name: str) -> tuple[int, ...]:
    """Triton's shape for `count` elements: the fixed dims must divide it, the innermost variable dim
    takes what remains and any other variable dim is 1."""
    remaining = count
    for dim in template:
        if dim == -1:
            continue
        if dim == 0 or remaining % dim:
            if dim == 0 and remaining == 0:
                continue
            raise InvalidInput(f"The schema can not convert input '{name}' to tensor with proper shape")
        remaining //= dim
    shape = list(template)
    for index in range(len(shape) - 1, -1, -1):
        if shape[index] == -1:
            shape[index], remaining = remaining, 1
    if remaining != 1 and not (count == 0 and math.prod(shape) == 0):
        raise InvalidInput(f"The schema can not convert input '{name}' to tensor with proper shape")
    return tuple(shape)


def _strings(value: Any) -> list[bytes]:
    """The UTF-8 strings of a BYTES value: a string or (nested) lists of strings."""
    if isinstance(value, str):
        return [value.encode()]
    if not isinstance(value, list):
        raise InvalidInput("Unable to parse JSON bytes array: attempt to access JSON non-string as string")
    found: list[bytes] = []
    open_lists = [iter(value)]
    while open_lists:
        for item in open_lists[-1]:
            if isinstance(item, list):
                if len(open_lists) >= _MAX_JSON_DEPTH:
                    raise InvalidInput(
                        f"JSON nesting depth exceeds maximum allowed limit ({_MAX_JSON_DEPTH})"
                    )
                open_lists.append(iter(item))
                break
            if not isinstance(item, str):
                raise InvalidInput(
                    "Unable to parse JSON bytes array: attempt to access JSON non-string as string"
                )
            found.append(item.encode())
        else:
            open_lists.pop()
    return found


def _numbers(value: Any, tensor: TensorSpec) -> np.ndarray:
    dtype = tensor.datatype
    if dtype.name in ("FP16", "BF16"):
        raise InvalidInput(
            f"receiving {dtype.name} data via JSON is not supported. Please use the binary data format "
            f"for input {tensor.name}"
        )
    try:
        return json_numbers(value if isinstance(value, list) else [value], dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"Unable to parse 'data': {exc}") from None


def encode_response(response: InferResponse) -> bytes:
    """The generate response object of one response.

    Where names collide, "id", "model_name" and "model_version" come first, then the response's
    parameters, then its outputs, as in Triton.
    """
    doc: dict[str, Any] = {}
    for out in response.outputs:
        data = json_data(out.data, out.datatype)
        doc[out.name] = data[0] if len(data) == 1 else data
    for key, value in response.parameters.items():
        if not isinstance(value, (str, int, float, bool)):
            raise Unsupported(
                f"Response parameter '{key}' has type '{type(value).__name__}' which is not currently "
                "supported"
            )
        doc[key] = value
    if response.id:
        doc["id"] = response.id
    doc["model_name"] = response.model_name
    doc["model_version"] = response.model_version
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def sse_event(payload: bytes) -> bytes:
    """One Server-Sent Event carrying `payload` (a JSON object on one line)."""
    return b"".join((SSE_PREFIX, payload, SSE_SUFFIX))
