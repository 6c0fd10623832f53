"""KServe v2 / Triton inference JSON (with binary tensor data) <-> InferRequest / InferResponse."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import orjson

from modelport.codecs.binary import BinaryReader, join_response, split_body
from modelport.config.spec import ModelSpec
from modelport.errors import InvalidInput, Unsupported
from modelport.shm import (
    RegionReader,
    is_in_shared_memory,
    parse_shared_memory_params,
)
from modelport.shm.params import KEYS as SHM_KEYS
from modelport.tensor import datatype
from modelport.tensor.buffers import array_from_buffer
from modelport.tensor.bytes_codec import as_bytes, encode_bytes
from modelport.tensor.records import InferInput, InferRequest, InferResponse, RequestedOutput
from modelport.tensor.shape import checked_shape

_DATA_SOURCES = ("data", "binary_data_size", "shared_memory_region")
_RESERVED_PREFIX = "triton_"
# Triton's limit on nested arrays in a tensor's JSON `data`.
_MAX_JSON_DEPTH = 100


def parse_json_object(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """A request's JSON document, which must be an object; anything else is INVALID_ARG."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("failed to parse the request JSON buffer: expected a JSON object")
    return doc


def decode_request(
    body: bytes | bytearray,
    header_length: int | None,
    model_name: str,
    model_version: str = "",
    shm: RegionReader | None = None,
) -> InferRequest:
    """Decode an infer request body; binary inputs become numpy views of `body` (or of `shm` regions)."""
    header, binary = split_body(body, header_length)
    doc = parse_json_object(header)
    request = InferRequest(model_name=model_name, model_version=model_version)
    request.id = _string(doc.get("id", ""), "id")
    request.parameters = _request_parameters(doc.get("parameters"))
    request.binary_data_output = bool(request.parameters.pop("binary_data_output", False))
    reader = BinaryReader(binary, model_name)
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("inference request must have an 'inputs' array")
    if header_length is None and any(_declares_binary(item) for item in inputs):
        raise InvalidInput(
            "must specify valid 'Infer-Header-Content-Length' in request header and 'binary_data_size' "
            "when passing inputs in binary data format"
        )
    request.inputs = [_decode_input(item, reader, shm) for item in inputs]
    reader.finish()
    outputs = doc.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be an array")
    request.outputs = [_decode_output(item, shm) for item in outputs]
    return request


def decode_raw_request(body: bytes | bytearray, spec: ModelSpec, model_version: str = "") -> InferRequest:
    """Triton's raw binary request (Inference-Header-Content-Length: 0): the body is the single input.

    The model must have exactly one input; a batching model gets batch 1; the one variable
    dimension (if any) is worked out from the byte count; all outputs come back binary.
    """
    if len(spec.inputs) != 1:
        raise InvalidInput(
            f"raw binary request (Inference-Header-Content-Length: 0) needs a model with exactly one "
            f"input; model '{spec.name}' has {len(spec.inputs)}"
        )
    tensor = spec.inputs[0]
    dtype = tensor.datatype
    batch = (1,) if spec.max_batch_size > 0 else ()
    if dtype.is_bytes:
        data = np.empty(1, dtype=object)
        data[0] = bytes(body)
        shape = (*batch, 1)
    else:
        shape = (*batch, *_raw_dims(tensor.dims, len(body), dtype, tensor.name))
        data = array_from_buffer(memoryview(body), dtype, shape, tensor.name, spec.name)
    request = InferRequest(model_name=spec.name, model_version=model_version, binary_data_output=True)
    request.inputs = [InferInput(tensor.name, dtype.name, shape, data.reshape(shape))]
    return request


def _raw_dims(dims: tuple[int, ...], size: int, dtype: datatype.DataType, name: str) -> tuple[int, ...]:
    variable = [i for i, d in enumerate(dims) if d == -1]
    if len(variable) > 1:
        raise InvalidInput(
            f"raw binary input '{name}' may have at most one variable dimension, has {len(variable)}"
        )
    fixed = math.prod(d for d in dims if d != -1) * dtype.itemsize
    if not variable:
        return dims
    if fixed == 0 or size % fixed:
        raise InvalidInput(f"raw binary input '{name}': {size} bytes is not a whole number of elements")
    return tuple(size // fixed if d == -1 else d for d in dims)


def _declares_binary(item: Any) -> bool:
    params = item.get("parameters") if isinstance(item, dict) else None
    return isinstance(params, dict) and "binary_data_size" in params


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string")
    return value


def _request_parameters(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    for key in params:
        if key.startswith(_RESERVED_PREFIX):
            raise InvalidInput(
                f"parameter keys starting with '{_RESERVED_PREFIX}' are reserved for Triton usage "
                f"and should not be specified."
            )
    return dict(params)


def _decode_input(item: Any, reader: BinaryReader, shm: RegionReader | None) -> InferInput:
    if not isinstance(item, dict):
        raise InvalidInput("each entry of 'inputs' must be a JSON object")
    name = _string(item.get("name"), "name") if "name" in item else ""
    if not name:
        raise InvalidInput("input is missing 'name'")
    dtype = datatype.from_name(_string(item.get("datatype"), f"datatype' of input '{name}"))
    shape = _shape(item.get("shape"), dtype, name)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of input '{name}' must be a JSON object")
    if len(params) == 1 and "binary_data_size" in params and "data" not in item:
        return InferInput(name, dtype.name, shape, _binary_input(params, reader, dtype, shape, name))
    sources = [s for s in _DATA_SOURCES if (s in item if s == "data" else s in params)]
    count = math.prod(shape)
    if len(sources) != 1 and not (not sources and count == 0):
        given = " ".join(f"'{s}'" for s in sources)
        raise InvalidInput(
            "Input must set only one of the following fields: 'data', 'binary_data_size' in "
            "'parameters', 'shared_memory_region' in 'parameters'. But set " + (given or "none")
        )
    source = sources[0] if sources else "data"
    ref = parse_shared_memory_params(params, name)
    if ref is not None:
        if shm is None:
            raise Unsupported(f"input '{name}': shared memory inputs are not supported on this path")
        data = array_from_buffer(shm.read(ref), dtype, shape, name, reader.model_name)
    elif source == "binary_data_size":
        data = _binary_input(params, reader, dtype, shape, name)
    else:
        data = _from_json(item.get("data", []), dtype, shape, name)
    extra = {k: v for k, v in params.items() if k != "binary_data_size" and k not in SHM_KEYS}
    return InferInput(name=name, datatype=dtype.name, shape=shape, data=data, parameters=extra)


def _binary_input(
    params: dict[str, Any], reader: BinaryReader, dtype: datatype.DataType, shape: tuple[int, ...], name: str
) -> np.ndarray:
    size = params["binary_data_size"]
    if not _is_count(size):
        raise InvalidInput(f"'binary_data_size' of input '{name}' must be a non-negative integer")
    return array_from_buffer(reader.take(size, name), dtype, shape, name, reader.model_name)


def _shape(value: Any, dtype: datatype.DataType, name: str) -> tuple[int, ...]:
    # JSON integers are exactly int (true/false are bool, which Python would count as int)
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        raise InvalidInput(f"'shape' of input '{name}' must be an array of integers")
    return checked_shape(value, dtype, name)


def _from_json(data: Any, dtype: datatype.DataType, shape: tuple[int, ...], name: str) -> np.ndarray:
    if dtype.name in ("FP16", "BF16"):
        raise InvalidInput(
            f"receiving {dtype.name} data via JSON is not supported. Please use the binary data format "
            f"for input {name}"
        )
    flat = data if isinstance(data, list) else [data]
    try:
        if dtype.is_bytes:
            items = _flatten(flat, math.prod(shape), shape, name)
            array = np.empty(len(items), dtype=object)
            array[:] = [as_bytes(v) for v in items]
        else:
            array = json_numbers(flat, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"Unable to parse 'data' of input '{name}' as {dtype.name}: {exc}") from None
    if array.size != math.prod(shape):
        raise _count_mismatch(name, shape, str(array.size))
    return array.reshape(shape)


def _count_mismatch(name: str, shape: tuple[int, ...], got: str) -> InvalidInput:
    return InvalidInput(
        f"Unable to parse 'data': Shape does not match true shape of 'data' field for input '{name}': "
        f"shape {list(shape)} needs {math.prod(shape)} elements, got {got}"
    )


def _is_count(value: Any) -> bool:
    """A non-negative JSON integer (true/false are not counts, though Python calls them ints)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def json_numbers(data: list[Any], dtype: datatype.DataType) -> np.ndarray:
    """The numbers of a (possibly nested) JSON array as a flat array of `dtype`.

    As in Triton, each value must be of its datatype's JSON kind: true/false for BOOL, integers for
    the integer types, any number for FP32/FP64; strings, nulls and the wrong kind are refused. A
    value the datatype cannot hold (300 as INT8, 1e308 as FP32) is refused too, not wrapped or
    made infinite.
    """
    leaves, kinds = _leaves(data)
    allowed, reason = _JSON_KINDS[dtype.name]
    if not kinds <= allowed:
        raise ValueError(reason)
    with np.errstate(over="ignore"):
        array = np.asarray(leaves, dtype=dtype.dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():  # JSON numbers are finite
        raise ValueError(f"a value is out of the range of {dtype.name}")
    return array


# Per datatype: the Python types of its JSON values, and Triton's reason for refusing any other value.
_Kinds = tuple[set[type], str]
_BOOLEAN: _Kinds = ({bool}, "attempt to access JSON non-boolean as boolean")
_SIGNED: _Kinds = ({int}, "attempt to access JSON non-signed-integer as signed-integer")
_UNSIGNED: _Kinds = ({int}, "attempt to access JSON non-unsigned-integer as unsigned-integer")
_NUMBER: _Kinds = ({int, float}, "attempt to access JSON non-number as double")
_JSON_KINDS: dict[str, _Kinds] = {
    "BOOL": _BOOLEAN,
    **dict.fromkeys(("INT8", "INT16", "INT32", "INT64"), _SIGNED),
    **dict.fromkeys(("UINT8", "UINT16", "UINT32", "UINT64"), _UNSIGNED),
    "FP32": _NUMBER,
    "FP64": _NUMBER,
}


def _leaves(data: list[Any]) -> tuple[list[Any], set[type]]:
    """The scalars of a JSON array nested to any (even uneven) depth, in row-major order, and their types."""
    level = data
    while True:
        kinds = set(map(type, level))
        if list not in kinds:
            return level, kinds
        if len(kinds) == 1:
            level = list(itertools.chain.from_iterable(level))
        else:  # scalars beside arrays: take one level off the arrays only
            level = list(itertools.chain.from_iterable(v if isinstance(v, list) else (v,) for v in level))


def _flatten(items: list[Any], limit: int, shape: tuple[int, ...], name: str) -> list[Any]:
    """The leaves of nested JSON arrays in order, refused past `limit` leaves or 100 levels of arrays.

    Iterative, so a deeply nested document is an INVALID_ARG, not a RecursionError.
    """
    leaves: list[Any] = []
    open_arrays = [iter(items)]
    while open_arrays:
        for item in open_arrays[-1]:
            if isinstance(item, list):
                if len(open_arrays) >= _MAX_JSON_DEPTH:
                    raise InvalidInput(
                        f"JSON nesting depth exceeds maximum allowed limit ({_MAX_JSON_DEPTH}) in 'data' "
                        f"of input '{name}'"
                    )
                open_arrays.append(iter(item))
                break
            if len(leaves) == limit:
                raise _count_mismatch(name, shape, f"more than {limit}")
            leaves.append(item)
        else:
            open_arrays.pop()
    return leaves


def _decode_output(item: Any, shm: RegionReader | None) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput("each entry of 'outputs' must be a JSON object with a 'name'")
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of output '{item['name']}' must be a JSON object")
    if not params:
        return RequestedOutput(item["name"])
    if len(params) == 1 and type(params.get("binary_data")) is bool:  # the usual request
        return RequestedOutput(item["name"], params["binary_data"])
    binary = params.get("binary_data")
    classification = params.get("classification", 0)
    if not _is_count(classification):
        raise InvalidInput(f"'classification' of output '{item['name']}' must be a non-negative integer")
    if parse_shared_memory_params(params, item["name"]) is not None and shm is None:
        raise Unsupported(f"output '{item['name']}': shared memory outputs are not supported on this path")
    return RequestedOutput(
        name=item["name"],
        binary=bool(binary) if binary is not None else None,
        classification=classification,
        parameters={k: v for k, v in params.items() if k not in ("binary_data", "classification")},
    )


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the JSON header's length."""
    binary_choice = {o.name: o.binary for o in request.outputs}
    outputs: list[dict[str, Any]] = []
    blobs: list[memoryview | bytes] = []
    for out in response.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if is_in_shared_memory(out.parameters):
            # The data went to the client's region. No `parameters` here: HTTP clients (the C++ one in
            # perf_analyzer among them) read any output `parameters` as carrying `binary_data_size`.
            outputs.append(entry)
            continue
        if out.parameters:
            entry["parameters"] = dict(out.parameters)
        binary = binary_choice.get(out.name)
        if binary is None:
            binary = request.binary_data_output
        if binary:
            blob = _raw_bytes(out.data, out.datatype)
            entry.setdefault("parameters", {})["binary_data_size"] = len(blob)
            blobs.append(blob)
        else:
            entry["data"] = json_data(out.data, out.datatype)
        outputs.append(entry)
    doc: dict[str, Any] = {}
    if response.id:
        doc["id"] = response.id
    doc["model_name"] = response.model_name
    doc["model_version"] = response.model_version
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return join_response(header, blobs)


def _raw_bytes(data: np.ndarray, dtype_name: str) -> memoryview | bytes:
    if dtype_name == "BYTES":
        return encode_bytes(data)
    contiguous = np.ascontiguousarray(data)
    return memoryview(contiguous).cast("B") if contiguous.size else b""  # type: ignore[arg-type]


def json_data(data: np.ndarray, dtype_name: str) -> Any:
    if dtype_name == "BYTES":
        return [as_bytes(v).decode("utf-8", errors="replace") for v in data.reshape(-1)]
    return np.ascontiguousarray(data).reshape(-1)
