"""Conversions between the server's request records and pb_utils objects (no tensor copies)."""

from __future__ import annotations

import json
from typing import Any

import triton_python_backend_utils as pb_utils
from modelport.backends.python.runner import ResponseChannel, triton_error
from modelport.errors import InvalidInput, ModelportError
from modelport.tensor import datatype
from modelport.tensor.records import InferInput, InferRequest, InferResponse, RequestedOutput

# Request parameters Triton consumes itself; a Python model does not see them in parameters().
_RESERVED = frozenset(
    ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers")
)


def visible_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in _RESERVED and not k.startswith("triton_")}


def sequence_flags(parameters: dict[str, Any]) -> int:
    flags = 0
    if parameters.get("sequence_start") is True:
        flags |= pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
    if parameters.get("sequence_end") is True:
        flags |= pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END
    return flags


def server_request(
    request: InferRequest,
    model_version: int,
    all_outputs: list[str],
    channel: ResponseChannel | None,
) -> pb_utils.InferenceRequest:
    """The pb_utils request a model's execute sees; its input tensors are views of the request data."""
    params = request.parameters
    return pb_utils.InferenceRequest._from_server(
        model_name=request.model_name,
        model_version=model_version,
        request_id=request.id,
        inputs=[pb_utils.Tensor(i.name, i.data) for i in request.inputs],
        requested_output_names=[o.name for o in request.outputs] if request.outputs else list(all_outputs),
        parameters=visible_parameters(params) if params else {},
        correlation_id=params.get("sequence_id", 0) if params else 0,
        flags=sequence_flags(params) if params else 0,
        channel=channel,
    )


def bls_request(request: pb_utils.InferenceRequest) -> InferRequest:
    """A BLS request from model code as a server request (tensors shared, not copied)."""
    inputs = []
    for tensor in request.inputs():
        array = tensor.as_numpy()
        try:
            dtype_name = datatype.from_numpy(array.dtype).name
        except InvalidInput as exc:
            raise pb_utils.TritonModelException(f"input '{tensor.name()}': {exc.message}") from None
        inputs.append(InferInput(tensor.name(), dtype_name, tuple(array.shape), array))
    parameters = dict(_params(request))
    if request.timeout() > 0:
        parameters["timeout"] = request.timeout()
    version = request.model_version()
    return InferRequest(
        model_name=request.model_name(),
        model_version="" if version is None or int(version) < 0 else str(version),
        id=request.request_id(),
        inputs=inputs,
        outputs=[RequestedOutput(name) for name in request.requested_output_names()],
        parameters=parameters,
    )


def _params(request: pb_utils.InferenceRequest) -> dict[str, Any]:
    parsed = json.loads(request.parameters())
    return parsed if isinstance(parsed, dict) else {}


def bls_response(response: InferResponse) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse([pb_utils.Tensor(o.name, o.data) for o in response.outputs])


def bls_error(error: ModelportError) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(error=triton_error(error))
