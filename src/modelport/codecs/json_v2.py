"""KServe v2 / Triton inference JSON (with binary tensor data) <-> InferRequest / InferResponse."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from modelport.codecs.binary import BinaryReader, join_response, split_body
from modelport.errors import InvalidInput
from modelport.tensor import datatype
from modelport.tensor.bytes_codec import as_bytes, decode_bytes, encode_bytes
from modelport.tensor.records import InferInput, InferRequest, InferResponse, RequestedOutput

_DATA_SOURCES = ("data", "binary_data_size", "shared_memory_region")
_RESERVED_PREFIX = "triton_"


def decode_request(
    body: bytes, header_length: int | None, model_name: str, model_version: str = ""
) -> InferRequest:
    """Decode an infer request body; binary inputs become numpy views of `body`."""
    header, binary = split_body(body, header_length)
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("failed to parse the request JSON buffer: expected a JSON object")
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
    request.inputs = [_decode_input(item, reader) for item in inputs]
    reader.finish()
    outputs = doc.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be an array")
    request.outputs = [_decode_output(item) for item in outputs]
    return request


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


def _decode_input(item: Any, reader: BinaryReader) -> InferInput:
    if not isinstance(item, dict):
        raise InvalidInput("each entry of 'inputs' must be a JSON object")
    name = _string(item.get("name"), "name") if "name" in item else ""
    if not name:
        raise InvalidInput("input is missing 'name'")
    dtype = datatype.from_name(_string(item.get("datatype"), f"datatype' of input '{name}"))
    shape = _shape(item.get("shape"), name)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of input '{name}' must be a JSON object")
    sources = [s for s in _DATA_SOURCES if (s in item if s == "data" else s in params)]
    count = math.prod(shape)
    if len(sources) != 1 and not (not sources and count == 0):
        given = " ".join(f"'{s}'" for s in sources)
        raise InvalidInput(
            "Input must set only one of the following fields: 'data', 'binary_data_size' in "
            "'parameters', 'shared_memory_region' in 'parameters'. But set " + (given or "none")
        )
    source = sources[0] if sources else "data"
    if source == "shared_memory_region":
        raise InvalidInput(f"input '{name}': shared memory inputs are not supported by this server yet")
    if source == "binary_data_size":
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0:
            raise InvalidInput(f"'binary_data_size' of input '{name}' must be a non-negative integer")
        data = _from_binary(reader.take(size, name), dtype, shape, name, reader)
    else:
        data = _from_json(item.get("data", []), dtype, shape, name)
    extra = {k: v for k, v in params.items() if k != "binary_data_size"}
    return InferInput(name=name, datatype=dtype.name, shape=shape, data=data, parameters=extra)


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidInput(f"'shape' of input '{name}' must be an array of integers")
    if any(d < 0 for d in value):
        raise InvalidInput(f"All input dimensions should be specified for input '{name}', got {value}")
    return tuple(value)


def _from_binary(
    chunk: memoryview, dtype: datatype.DataType, shape: tuple[int, ...], name: str, reader: BinaryReader
) -> np.ndarray:
    count = math.prod(shape)
    if dtype.is_bytes:
        return decode_bytes(chunk, count).reshape(shape)
    if dtype.dtype is None:
        raise InvalidInput(f"datatype {dtype.name} of input '{name}' is not supported by this server")
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input byte size mismatch for input '{name}' for model '{reader.model_name}'. "
            f"Expected {expected}, got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype.dtype).reshape(shape)


def _from_json(data: Any, dtype: datatype.DataType, shape: tuple[int, ...], name: str) -> np.ndarray:
    if dtype.name in ("FP16", "BF16"):
        raise InvalidInput(
            f"receiving {dtype.name} data via JSON is not supported. Please use the binary data format "
            f"for input {name}"
        )
    flat = data if isinstance(data, list) else [data]
    try:
        if dtype.is_bytes:
            items = _flatten(flat)
            array = np.empty(len(items), dtype=object)
            array[:] = [as_bytes(v) for v in items]
        else:
            array = np.asarray(flat, dtype=dtype.dtype).reshape(-1)
            if dtype.name != "BOOL" and array.size and _has_bools(flat):
                raise ValueError("booleans given for a numeric tensor")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"Unable to parse 'data' of input '{name}' as {dtype.name}: {exc}") from None
    if array.size != math.prod(shape):
        raise InvalidInput(
            f"Unable to parse 'data': Shape does not match true shape of 'data' field for input '{name}': "
            f"shape {list(shape)} needs {math.prod(shape)} elements, got {array.size}"
        )
    return array.reshape(shape)


def _has_bools(flat: list[Any]) -> bool:
    first = flat[0]
    while isinstance(first, list) and first:
        first = first[0]
    return isinstance(first, bool)


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _decode_output(item: Any) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput("each entry of 'outputs' must be a JSON object with a 'name'")
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of output '{item['name']}' must be a JSON object")
    binary = params.get("binary_data")
    classification = params.get("classification", 0)
    if not isinstance(classification, int) or classification < 0:
        raise InvalidInput(f"'classification' of output '{item['name']}' must be a non-negative integer")
    if "shared_memory_region" in params:
        raise InvalidInput(f"output '{item['name']}': shared memory outputs are not supported by this server yet")
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
            entry["data"] = _json_data(out.data, out.datatype)
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
    return memoryview(contiguous).cast("B") if contiguous.size else b""


def _json_data(data: np.ndarray, dtype_name: str) -> Any:
    if dtype_name == "BYTES":
        return [as_bytes(v).decode("utf-8", errors="replace") for v in data.reshape(-1)]
    return np.ascontiguousarray(data).reshape(-1)
