"""The `triton_python_backend_utils` module that Triton Python-backend models import as `pb_utils`.

The classes and functions here follow the interface Triton's Python backend documents, so an
unchanged `model.py` runs on modelport: Tensor, InferenceRequest (with BLS `exec()` /
`async_exec()`), InferenceResponse, InferenceResponseSender, TritonError, TritonModelException,
ModelConfig (auto-complete helpers), Logger and the config / dtype helpers.

How requests reach other models (BLS) and where decoupled responses go is decided by modelport
(`modelport.backends.python`): it binds a runtime to the threads that run model code, and a
response channel to each request it hands to `execute`. Names starting with `_` are that hook and
are not part of the model-facing interface.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "TRITONSERVER_MEMORY_CPU",
    "TRITONSERVER_MEMORY_CPU_PINNED",
    "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "Logger",
    "ModelConfig",
    "PreferredMemory",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "is_model_ready",
    "load_model",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "unload_model",
    "using_decoupled_model_transaction_policy",
]

# --- constants (values of Triton's C API enums) ----------------------------------------------
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}

# TRITONSERVER_DataType values in the order of the enum (1 = BOOL ... 13 = BYTES).
_TRITON_TYPES: tuple[Any, ...] = (
    None,
    np.bool_,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.object_,
)


# --- errors ----------------------------------------------------------------------------------
class TritonError:
    """An error for one response: a message and one of Triton's error codes (INTERNAL by default)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    __slots__ = ("_code", "_message")

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, code={self._code})"


class TritonModelException(Exception):
    """Raised by model code (and by this module) to fail initialize, execute or finalize."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message


# --- tensors ---------------------------------------------------------------------------------
class Tensor:
    """A named numpy array; inputs handed to `execute` are views of the request data (no copy)."""

    __slots__ = ("_array", "_name")

    def __init__(self, name: str, numpy_array: Any, triton_dtype: int | None = None) -> None:
        array = numpy_array if isinstance(numpy_array, np.ndarray) else np.asarray(numpy_array)
        if array.dtype.kind in ("U", "V"):
            raise TritonModelException(
                "Tensor dtype used for numpy_array is not support by Python backend. Please use np.object_ "
                "instead."
            )
        if triton_dtype is not None:
            wanted = triton_to_numpy_type(triton_dtype)
            if wanted is not None and array.dtype != wanted:
                array = array.view(wanted)
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int | None:
        return numpy_to_triton_type(self._array.dtype)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        """A DLPack capsule of the data (numpy can export every non-object dtype)."""
        if self._array.dtype == np.object_:
            raise TritonModelException(
                f"tensor '{self._name}' holds BYTES objects, which DLPack cannot carry"
            )
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: Any) -> Tensor:
        """A Tensor from an object with `__dlpack__` (numpy, torch, ...) or a DLPack capsule."""
        if hasattr(dlpack_tensor, "__dlpack__"):
            array = np.from_dlpack(dlpack_tensor)
        else:
            array = _array_from_capsule(dlpack_tensor)
        if not array.flags.c_contiguous:
            raise TritonModelException(
                "DLPack tensor is not contiguous. Only contiguous DLPack tensors are supported"
            )
        return Tensor(name, array)

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, shape={self._array.shape}, dtype={self._array.dtype})"


def _array_from_capsule(capsule: Any) -> np.ndarray:
    """numpy cannot consume a bare capsule; torch can, and shares the memory."""
    try:
        from torch.utils.dlpack import from_dlpack as torch_from_dlpack
    except ImportError:
        raise TritonModelException(
            "from_dlpack got a DLPack capsule; pass an object with __dlpack__ (a numpy array or a framework "
            "tensor) or install torch to read capsules"
        ) from None
    tensor = torch_from_dlpack(capsule)
    if tensor.device.type != "cpu":
        raise TritonModelException("only CPU tensors are supported by this server's Python backend")
    return np.asarray(tensor.numpy())


class PreferredMemory:
    """Where a BLS caller would like its output tensors (outputs are always CPU numpy arrays here)."""

    def __init__(
        self, preferred_memory_type: int = TRITONSERVER_MEMORY_CPU, preferred_device_id: int = 0
    ) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


# --- the hook modelport binds ----------------------------------------------------------------
class _Runtime(Protocol):
    """Runs BLS requests for model code (bound by modelport to the threads running a model)."""

    def exec(self, request: InferenceRequest, decoupled: bool) -> Any: ...

    def async_exec(self, request: InferenceRequest, decoupled: bool) -> Awaitable[Any]: ...

    def is_model_ready(self, model_name: str, model_version: str) -> bool: ...


class _ResponseChannel(Protocol):
    """Where the responses of one request go (decoupled models)."""

    def send(self, response: InferenceResponse | None, flags: int) -> None: ...

    def is_cancelled(self) -> bool: ...


_thread_runtime = threading.local()
_process_runtime: list[_Runtime] = []


def _bind_runtime(runtime: _Runtime | None) -> None:
    """Bind `runtime` to the current thread (None unbinds)."""
    _thread_runtime.value = runtime


def _set_process_runtime(runtime: _Runtime) -> None:
    """The runtime used by threads that model code starts itself (no thread binding)."""
    _process_runtime[:] = [runtime]


def _runtime() -> _Runtime:
    runtime: _Runtime | None = getattr(_thread_runtime, "value", None)
    if runtime is None and _process_runtime:
        runtime = _process_runtime[0]
    if runtime is None:
        raise TritonModelException("BLS is not available: this code is not running inside a modelport server")
    return runtime


# --- requests and responses ------------------------------------------------------------------
class InferenceRequest:
    """A request: handed to `execute` by the server, or built by model code to call another model (BLS)."""

    __slots__ = (
        "_channel",
        "_correlation_id",
        "_flags",
        "_inputs",
        "_model_name",
        "_model_version",
        "_parameters",
        "_preferred_memory",
        "_request_id",
        "_requested_output_names",
        "_timeout",
    )

    def __init__(
        self,
        model_name: str = "",
        requested_output_names: Sequence[str] = (),
        inputs: Sequence[Tensor] = (),
        request_id: str = "",
        correlation_id: int | str = 0,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: Any = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        for tensor in inputs:
            if not isinstance(tensor, Tensor):
                raise TritonModelException("InferenceRequest inputs must be pb_utils.Tensor objects")
        self._model_name = model_name
        self._requested_output_names = list(requested_output_names)
        self._inputs = list(inputs)
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        self._preferred_memory = preferred_memory
        self._parameters = _parameters_dict(parameters)
        self._channel: _ResponseChannel | None = None

    @classmethod
    def _from_server(
        cls,
        model_name: str,
        model_version: int,
        request_id: str,
        inputs: list[Tensor],
        requested_output_names: list[str],
        parameters: dict[str, Any],
        correlation_id: int | str,
        flags: int,
        channel: _ResponseChannel | None,
    ) -> InferenceRequest:
        request = cls.__new__(cls)
        request._model_name = model_name
        request._model_version = model_version
        request._request_id = request_id
        request._inputs = inputs
        request._requested_output_names = requested_output_names
        request._parameters = parameters
        request._correlation_id = correlation_id
        request._flags = flags
        request._timeout = 0
        request._preferred_memory = None
        request._channel = channel
        return request

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def model_name(self) -> str:
        return self._model_name

    def model_version(self) -> int:
        return self._model_version

    def requested_output_names(self) -> list[str]:
        return self._requested_output_names

    def parameters(self) -> str:
        """The request parameters as a JSON string, as Triton gives them."""
        return json.dumps(self._parameters)

    def is_cancelled(self) -> bool:
        return self._channel.is_cancelled() if self._channel is not None else False

    def set_release_flags(self, flags: int) -> None:
        if flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise TritonModelException("request rescheduling is not supported by this server")

    def get_response_sender(self) -> InferenceResponseSender:
        if self._channel is None:
            raise TritonModelException(
                "get_response_sender() is only available for requests given to a decoupled model's execute "
                "(model_transaction_policy { decoupled: true })"
            )
        return InferenceResponseSender(self._channel)

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on another loaded model and wait: one response, or an iterator when decoupled."""
        return _runtime().exec(self, decoupled)

    def async_exec(self, decoupled: bool = False) -> Awaitable[Any]:
        """Like exec(), as an awaitable for `async def execute`."""
        return _runtime().async_exec(self, decoupled)


class InferenceResponse:
    """The response to one request: output tensors, or an error."""

    __slots__ = ("_error", "_output_tensors", "_parameters")

    def __init__(
        self,
        output_tensors: Sequence[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        tensors = [] if output_tensors is None else output_tensors
        if not isinstance(tensors, (list, tuple)):
            raise TritonModelException('"output_tensors" must be a list.')
        for tensor in tensors:
            if not isinstance(tensor, Tensor):
                raise TritonModelException("InferenceResponse output_tensors must be pb_utils.Tensor objects")
        if error is not None and not isinstance(error, TritonError):
            raise TritonModelException('"error" must be a pb_utils.TritonError')
        self._output_tensors = list(tensors)
        self._error = error
        self._parameters = _parameters_dict(parameters)

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return json.dumps(self._parameters)


class InferenceResponseSender:
    """Sends any number of responses for one request of a decoupled model; the last carries the FINAL flag."""

    __slots__ = ("_channel",)

    def __init__(self, channel: _ResponseChannel) -> None:
        self._channel = channel

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException("send() takes a pb_utils.InferenceResponse")
        if response is None and not flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is not FINAL."
            )
        self._channel.send(response, flags)

    def is_cancelled(self) -> bool:
        return self._channel.is_cancelled()


def _parameters_dict(parameters: dict[str, Any] | str | None) -> dict[str, Any]:
    if parameters is None:
        return {}
    if isinstance(parameters, str):
        parsed = json.loads(parameters) if parameters else {}
        if not isinstance(parsed, dict):
            raise TritonModelException("parameters must be a JSON object")
        return parsed
    if not isinstance(parameters, dict):
        raise TritonModelException("parameters must be a dict of str to bool, int or str")
    for key, value in parameters.items():
        if not isinstance(key, str) or not isinstance(value, (bool, int, str, float)):
            raise TritonModelException("parameters must be a dict of str to bool, int or str")
    return dict(parameters)


# --- model management from model code ---------------------------------------------------------
def is_model_ready(model_name: str, model_version: str = "") -> bool:
    return _runtime().is_model_ready(model_name, str(model_version))


def load_model(model_name: str, config: str = "", files: dict[str, bytes] | None = None) -> None:
    raise TritonModelException("load_model is not supported from model code by this server")


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    raise TritonModelException("unload_model is not supported from model code by this server")


# --- lookups ---------------------------------------------------------------------------------
def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("input", ()) if t.get("name") == name), None)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("output", ()) if t.get("name") == name), None)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


# --- datatypes -------------------------------------------------------------------------------
def triton_to_numpy_type(data_type: int) -> Any:
    return _TRITON_TYPES[data_type] if 0 < data_type < len(_TRITON_TYPES) else None


def numpy_to_triton_type(data_type: Any) -> int | None:
    dtype = np.dtype(data_type)
    if dtype.kind in ("O", "S"):
        return 13
    for code, candidate in enumerate(_TRITON_TYPES):
        if candidate is not None and candidate is not np.object_ and dtype == np.dtype(candidate):
            return code
    return None


def triton_string_to_numpy(triton_type_string: str) -> Any:
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def serialize_byte_tensor(input_tensor: np.ndarray) -> bytes | None:
    """Length-prefixed (4-byte little-endian) elements in C order; str elements are UTF-8 encoded."""
    if input_tensor.size == 0:
        return b""
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type != np.bytes_:
        return None
    parts: list[bytes] = []
    for item in input_tensor.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    items: list[bytes] = []
    view = memoryview(encoded_tensor)
    offset = 0
    while offset < len(view):
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        items.append(bytes(view[offset : offset + length]))
        offset += length
    array = np.empty(len(items), dtype=np.object_)
    array[:] = items
    return array


# --- auto-complete ---------------------------------------------------------------------------
class ModelConfig:
    """The model configuration handed to `auto_complete_config`; returned (possibly changed) by it."""

    def __init__(self, model_config: str | dict[str, Any]) -> None:
        self._config: dict[str, Any] = (
            json.loads(model_config) if isinstance(model_config, str) else dict(model_config)
        )
        self._config.setdefault("input", [])
        self._config.setdefault("output", [])
        self._config.setdefault("max_batch_size", 0)

    def as_dict(self) -> dict[str, Any]:
        return self._config

    @property
    def _name(self) -> str:
        return str(self._config.get("name", ""))

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in auto-complete-config function for "
                f"model '{self._name}' specified max_batch_size {max_batch_size}"
            )
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{other}', but auto-complete-config "
                    "function "
                    f"for model '{self._name}' tries to set scheduling_choice as 'dynamic_batching'"
                )
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    f"model transaction property in auto-complete-config function for model '{self._name}' "
                    f"contains property other than 'decoupled'"
                )
        policy = self._config.setdefault("model_transaction_policy", {})
        wanted = bool(transaction_policy_dict.get("decoupled", False))
        if "decoupled" in policy and bool(policy["decoupled"]) != wanted:
            raise ValueError(
                f"trying to change decoupled property in auto-complete-config for model '{self._name}', "
                "which "
                f"is already set to '{policy['decoupled']}'"
            )
        policy["decoupled"] = wanted

    def add_input(self, input: dict[str, Any]) -> None:
        self._add_tensor("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output: dict[str, Any]) -> None:
        self._add_tensor("output", output, ("name", "data_type", "dims"))

    def _add_tensor(self, kind: str, tensor: dict[str, Any], allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        name = tensor.get("name")
        extra = [key for key in tensor if key not in allowed]
        if extra:
            listed = ", ".join(f"'{key}'" for key in allowed)
            raise ValueError(
                f"{kind} '{name}' in auto-complete-config function for model '{self._name}' contains "
                "property "
                f"other than {listed}."
            )
        if name is None:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{self._name}' is missing 'name' "
                "property."
            )
        for required in ("data_type", "dims"):
            if required not in tensor:
                raise ValueError(
                    f"{kind} '{name}' in auto-complete-config function for model '{self._name}' is missing "
                    f"'{required}' property."
                )
        for existing in self._config[kind]:
            if existing.get("name") != name:
                continue
            current_type = existing.get("data_type", "TYPE_INVALID")
            if current_type not in ("TYPE_INVALID", tensor["data_type"]):
                raise ValueError(
                    f"unable to load model '{self._name}', configuration expects datatype {current_type} for "
                    f"{kind} '{name}', model provides {tensor['data_type']}"
                )
            current_dims = list(existing.get("dims") or [])
            if current_dims and current_dims != list(tensor["dims"]):
                raise ValueError(
                    f"model '{self._name}', tensor '{name}': the model expects dims {list(tensor['dims'])} "
                    "but the "
                    f"model configuration specifies dims {current_dims}"
                )
            if "optional" in existing and "optional" in tensor and existing["optional"] != tensor["optional"]:
                raise ValueError(
                    f"model '{self._name}', tensor '{name}': the model expects optional {tensor['optional']} "
                    "but "
                    f"the model configuration specifies optional {existing['optional']}"
                )
            existing["data_type"] = tensor["data_type"]
            existing["dims"] = list(tensor["dims"])
            if "optional" in tensor:
                existing["optional"] = tensor["optional"]
            return
        self._config[kind].append({**tensor, "dims": list(tensor["dims"])})


# --- logging ---------------------------------------------------------------------------------
class Logger:
    """Model log lines go to the server log, filtered by its log settings."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3

    _LEVELS = {INFO: logging.INFO, WARNING: logging.WARNING, ERROR: logging.ERROR, VERBOSE: logging.DEBUG}
    _log = logging.getLogger("modelport.python_model")

    @classmethod
    def log(cls, message: str, level: int = INFO) -> None:
        cls._log.log(cls._LEVELS.get(level, logging.INFO), "%s", message, stacklevel=2)

    @classmethod
    def log_info(cls, message: str) -> None:
        cls._log.info("%s", message, stacklevel=2)

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls._log.warning("%s", message, stacklevel=2)

    @classmethod
    def log_error(cls, message: str) -> None:
        cls._log.error("%s", message, stacklevel=2)

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls._log.debug("%s", message, stacklevel=2)
