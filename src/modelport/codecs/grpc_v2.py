"""GRPCInferenceService ModelInferRequest / ModelInferResponse <-> InferRequest / InferResponse.

Inputs come from `raw_input_contents` (numpy views of the received bytes), from typed `contents`,
or from registered shared memory; never from both raw and typed contents in one request. Outputs
always travel in `raw_output_contents`, one entry per output at the same index, which is the only
form tritonclient.grpc reads numeric results from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, Unsupported
from modelport.protocol import service_pb2
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

ModelInferRequest = service_pb2.ModelInferRequest
ModelInferResponse = service_pb2.ModelInferResponse
ModelStreamInferResponse = service_pb2.ModelStreamInferResponse

FINAL_RESPONSE = "triton_final_response"
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"
_RESERVED_ALLOWED = (EMPTY_FINAL_RESPONSE,)
_INT64_MAX = (1 << 63) - 1

# typed contents field -> (the datatype its elements have on the wire, datatypes it may carry)
_CONTENT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bool_contents": ("BOOL", ("BOOL",)),
    "int_contents": ("INT32", ("INT8", "INT16", "INT32")),
    "int64_contents": ("INT64", ("INT64",)),
    "uint_contents": ("UINT32", ("UINT8", "UINT16", "UINT32")),
    "uint64_contents": ("UINT64", ("UINT64",)),
    "fp32_contents": ("FP32", ("FP32",)),
    "fp64_contents": ("FP64", ("FP64",)),
    "bytes_contents": ("BYTES", ("BYTES",)),
}


# --- request ------------------------------------------------------------------------------------
def decode_request(msg: Any, shm: RegionReader | None = None) -> InferRequest:
    """Decode a ModelInferRequest; `shm` resolves inputs that live in registered shared memory."""
    model = msg.model_name
    request = InferRequest(model_name=model, model_version=model_version(msg.model_version), id=msg.id)
    request.parameters = _request_parameters(msg.parameters)
    request.inputs = _decode_inputs(msg, shm)
    request.outputs = [_decode_output(out, shm) for out in msg.outputs]
    return request


def model_version(version: str) -> str:
    """A request's version string ("" = the policy's choice), or INVALID_ARG when not an integer."""
    if version and not version.isdigit():
        raise InvalidInput(f"failed to get model version from specified version string '{version}'")
    return version


def _request_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as Python values, checked the way Triton checks the reserved ones."""
    result: dict[str, Any] = {}
    for key, param in params.items():
        kind = param.WhichOneof("parameter_choice")
        value: Any = getattr(param, kind) if kind else None
        if key == "sequence_id":
            _expect(key, kind, ("int64_param", "string_param"), "int64_param or string_param")
        elif key in ("sequence_start", "sequence_end"):
            _expect(key, kind, ("bool_param",), "bool_param")
        elif key == "priority":
            _expect(key, kind, ("int64_param", "uint64_param"), "int64_param or uint64_param")
            if value < 0:
                raise InvalidInput("invalid value for 'priority', expected value >= 0.")
        elif key == "timeout":
            _expect(key, kind, ("int64_param",), "int64_param")
        elif key.startswith("triton_"):
            if key not in _RESERVED_ALLOWED:
                raise InvalidInput(
                    "parameter keys starting with 'triton_' are reserved for Triton usage. Only the "
                    "following keys starting with 'triton_' are allowed: " + " ".join(_RESERVED_ALLOWED)
                )
            _expect(key, kind, ("bool_param",), "bool_param")
            continue  # transport state, read by the stream handler from the message itself
        else:
            _expect(
                key,
                kind,
                ("int64_param", "bool_param", "string_param"),
                "int64_param, bool_param, or string_param",
            )
        result[key] = value
    return result


def _expect(key: str, kind: str | None, allowed: tuple[str, ...], described: str) -> None:
    if kind not in allowed:
        raise InvalidInput(f"invalid value type for '{key}' parameter, expected {described}.")


def _decode_inputs(msg: Any, shm: RegionReader | None) -> list[InferInput]:
    model = msg.model_name
    raw = msg.raw_input_contents
    raw_count = len(raw)
    next_raw = 0
    inputs: list[InferInput] = []
    for tensor in msg.inputs:
        name = tensor.name
        dtype = datatype.from_name(tensor.datatype)
        shape = checked_shape(tensor.shape, dtype, name)
        params = tensor_parameters(tensor.parameters)
        ref = parse_shared_memory_params(params, name)
        has_contents = tensor.HasField("contents")
        if ref is not None:
            if has_contents:
                raise InvalidInput(
                    f"unexpected 'content' provided when using shared memory for input tensor '{name}' "
                    f"for model '{model}'"
                )
            if shm is None:
                raise Unsupported("shared memory inputs are not supported on this path")
            data = array_from_buffer(shm.read(ref), dtype, shape, name, model)
        elif has_contents and raw_count:
            raise InvalidInput(
                f"contents field must not be specified when using raw_input_contents for '{name}' "
                f"for model '{model}'"
            )
        elif has_contents:
            data = _from_contents(tensor.contents, dtype, shape, name, model)
        elif next_raw < raw_count:
            data = array_from_buffer(raw[next_raw], dtype, shape, name, model)
            next_raw += 1
        else:
            raise InvalidInput(
                f"unable to find data for input tensor '{name}' for model '{model}' in request."
            )
        extra = {k: v for k, v in params.items() if k not in SHM_KEYS}
        inputs.append(InferInput(name=name, datatype=dtype.name, shape=shape, data=data, parameters=extra))
    if next_raw != raw_count:
        raise InvalidInput(
            f"unexpected number of raw_input_contents for model '{model}': {raw_count} given, but only "
            f"{next_raw} input(s) take their data from raw_input_contents"
        )
    return inputs


def _from_contents(
    contents: Any, dtype: datatype.DataType, shape: tuple[int, ...], name: str, model: str
) -> np.ndarray:
    given = [f for f in _CONTENT_FIELDS if len(getattr(contents, f))]
    if len(given) > 1:
        raise InvalidInput(
            f"unexpected explicit tensor data for input tensor '{name}' for model '{model}', "
            f"binary data was already supplied."
        )
    field = given[0] if given else None
    if field is not None and dtype.name not in _CONTENT_FIELDS[field][1]:
        raise InvalidInput(
            f"unexpected explicit tensor data for input tensor '{name}' for model '{model}' of type "
            f"'{_CONTENT_FIELDS[field][0]}', expected datatype '{dtype.name}'"
        )
    values: Any = getattr(contents, field) if field is not None else ()
    count = math.prod(shape)
    if len(values) != count:  # checked before any element is converted
        raise InvalidInput(
            f"unexpected number of elements in the contents of input '{name}' for model '{model}'. "
            f"Expected {count} for shape {list(shape)}, got {len(values)}"
        )
    if field is None:
        array = np.empty(0, dtype=dtype.dtype if dtype.dtype is not None else np.uint8)
    elif dtype.is_bytes:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    else:
        natural = datatype.from_name(_CONTENT_FIELDS[field][0]).dtype
        # INT8/INT16/UINT8/UINT16 travel widened to 32 bits; narrowing keeps the low bytes (as Triton).
        array = np.fromiter(values, dtype=natural, count=len(values)).astype(dtype.dtype, copy=False)
    return array.reshape(shape)


def _decode_output(out: Any, shm: RegionReader | None) -> RequestedOutput:
    classification = 0
    param = out.parameters.get("classification")
    if param is not None:
        if param.WhichOneof("parameter_choice") != "int64_param":
            raise InvalidInput("invalid value type for 'classification' parameter, expected int64_param")
        if param.int64_param <= 0:
            raise InvalidInput("invalid value for 'classification' parameter, expected >= 1")
        classification = param.int64_param
    params = tensor_parameters(out.parameters)
    if parse_shared_memory_params(params, out.name) is not None and shm is None:
        raise Unsupported("shared memory outputs are not supported on this path")
    params.pop("classification", None)
    return RequestedOutput(name=out.name, classification=classification, parameters=params)


def tensor_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """A protobuf parameter map as Python values (an unset value becomes None)."""
    result: dict[str, Any] = {}
    for key, param in params.items():
        kind = param.WhichOneof("parameter_choice")
        result[key] = getattr(param, kind) if kind else None
    return result


# --- response -----------------------------------------------------------------------------------
def encode_response(response: InferResponse, into: Any = None) -> Any:
    """A ModelInferResponse (filled into `into` when given) with every output in raw_output_contents."""
    msg = into if into is not None else ModelInferResponse()
    msg.model_name = response.model_name
    msg.model_version = response.model_version
    msg.id = response.id
    if response.parameters:
        set_parameters(msg.parameters, response.parameters)
    raw: list[bytes] = []
    for out in response.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        if out.parameters:
            set_parameters(tensor.parameters, out.parameters)
        # Outputs written to shared memory keep their slot, empty, so indices still line up.
        raw.append(b"" if is_in_shared_memory(out.parameters) else _raw_bytes(out.data, out.datatype))
    msg.raw_output_contents.extend(raw)
    return msg


def _raw_bytes(data: np.ndarray, dtype_name: str) -> bytes:
    if dtype_name == "BYTES":
        return encode_bytes(data)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return np.ascontiguousarray(data).tobytes()


def set_parameters(target: Any, params: Mapping[str, Any]) -> None:
    """Write Python values into a protobuf map<string, InferParameter>."""
    for key, value in params.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, (int, np.integer)):
            if int(value) > _INT64_MAX:
                param.uint64_param = int(value)
            else:
                param.int64_param = int(value)
        elif isinstance(value, (float, np.floating)):
            param.double_param = float(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            param.string_param = as_bytes(value).decode("utf-8", errors="replace")
        else:
            param.string_param = str(value)


# --- streaming ----------------------------------------------------------------------------------
def encode_stream_response(response: InferResponse, final: bool = True) -> Any:
    """A ModelStreamInferResponse carrying one result; Triton flags the last one of each request."""
    msg = ModelStreamInferResponse()
    encode_response(response, into=msg.infer_response)
    msg.infer_response.parameters[FINAL_RESPONSE].bool_param = final
    return msg


def encode_stream_error(request_id: str, message: str) -> Any:
    """A failed stream request: the error travels in the message and the stream stays open."""
    msg = ModelStreamInferResponse(error_message=message)
    msg.infer_response.id = request_id
    return msg
