"""ServerRuntime: BLS for model code running inside the server process (the in-thread mode).

`exec()` blocks the model's thread while the request runs on the server's event loop; nothing is
copied or serialised on the way.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator

import triton_python_backend_utils as pb_utils
from modelport.backends.caller import InferenceCaller, StreamResult
from modelport.backends.python.convert import bls_error, bls_request, bls_response
from modelport.errors import ModelportError
from modelport.tensor.records import InferRequest

# Ask a decoupled target for an empty last response, so a BLS stream always ends with one.
_EMPTY_FINAL = "triton_enable_empty_final_response"


class ServerRuntime:
    """pb_utils' runtime hook for models executed by this server process."""

    def __init__(self, caller: InferenceCaller | None) -> None:
        self._caller = caller

    def exec(self, request: pb_utils.InferenceRequest, decoupled: bool) -> object:
        server_request = bls_request(request)
        if decoupled:
            return self._stream(server_request)
        try:
            response = self._require_caller().infer(server_request).result()
        except ModelportError as exc:
            return bls_error(exc)
        return bls_response(response)

    async def async_exec(self, request: pb_utils.InferenceRequest, decoupled: bool) -> object:
        server_request = bls_request(request)
        if decoupled:
            return self._stream(server_request)
        try:
            response = await asyncio.wrap_future(self._require_caller().infer(server_request))
        except ModelportError as exc:
            return bls_error(exc)
        return bls_response(response)

    def is_model_ready(self, model_name: str, model_version: str) -> bool:
        return self._require_caller().is_model_ready(model_name, model_version)

    def _stream(self, request: InferRequest) -> Iterator[pb_utils.InferenceResponse]:
        request.parameters[_EMPTY_FINAL] = True
        results: queue.SimpleQueue[StreamResult | None] = queue.SimpleQueue()
        try:
            self._require_caller().stream(request, results.put)
        except ModelportError as exc:
            results.put((exc, True))
            results.put(None)
        return stream_responses(results)

    def _require_caller(self) -> InferenceCaller:
        if self._caller is None:
            raise pb_utils.TritonModelException(
                "BLS is not available: this server was started without a core caller"
            )
        return self._caller


def stream_responses(results: queue.SimpleQueue[StreamResult | None]) -> Iterator[pb_utils.InferenceResponse]:
    """The responses of a streamed BLS request, as they arrive."""
    while (item := results.get()) is not None:
        result, _final = item
        yield bls_error(result) if isinstance(result, ModelportError) else bls_response(result)
