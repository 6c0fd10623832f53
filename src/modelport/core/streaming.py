"""Streaming inference: 0..n responses per request for decoupled models, one for the others.

A decoupled model's instance sends each response into the request's ResponseStream from its own
thread; the stream hands them to the event loop, where `stream_decoupled` turns them into
StreamItems for the frontend (gRPC ModelStreamInfer).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator
from typing import Any, NamedTuple

import numpy as np

from modelport.errors import ModelportError, ModelUnavailable, with_request_id
from modelport.repository.served import ServedModel
from modelport.tensor import datatype
from modelport.tensor.records import InferOutput, InferRequest, InferResponse

EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"

_Event = tuple[dict[str, np.ndarray] | None, ModelportError | None, bool]


class StreamItem(NamedTuple):
    """One streamed result: a response or a per-response error, and whether it ends its request."""

    result: InferResponse | ModelportError
    final: bool


class ResponseStream:
    """A ResponseSink whose responses are consumed on the event loop; `send` may run on any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        self._lock = threading.Lock()
        self._finished = False
        self._cancelled = False

    def send(self, outputs: dict[str, np.ndarray] | None, error: ModelportError | None, final: bool) -> None:
        with self._lock:
            if self._finished or self._cancelled:
                return
            self._finished = final
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (outputs, error, final))

    def fail(self, error: ModelportError) -> None:
        """End the request with `error` unless it already ended."""
        self.send(None, error, True)

    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """The consumer went away: later responses are dropped."""
        self._cancelled = True

    async def get(self) -> _Event:
        return await self._queue.get()


async def stream_decoupled(
    request: InferRequest, model: ServedModel, empty_final_response: bool = False
) -> AsyncGenerator[StreamItem, None]:
    """Run a validated request on a decoupled model and yield each response it sends.

    When the model ends a request with a bare FINAL flag, an empty final response is yielded only
    if `empty_final_response` (or the request parameter triton_enable_empty_final_response) asks.
    """
    stream = ResponseStream(asyncio.get_running_loop())
    request.response_sink = stream
    empty_final = empty_final_response or request.parameters.get(EMPTY_FINAL_RESPONSE) is True
    submitted = asyncio.ensure_future(model.scheduler.submit(request))
    submitted.add_done_callback(lambda task: _fail_on_error(task, stream, request.id))
    try:
        while True:
            outputs, error, final = await stream.get()
            if error is not None:
                yield StreamItem(error, final)
            elif outputs is not None:
                yield StreamItem(build_stream_response(request, model, outputs), final)
            elif final and empty_final:
                yield StreamItem(_response(request, model), True)
            if final:
                return
    finally:
        stream.cancel()
        if not submitted.done():
            submitted.cancel()


def _fail_on_error(task: asyncio.Future[Any], stream: ResponseStream, request_id: str) -> None:
    if task.cancelled():
        stream.fail(ModelUnavailable(with_request_id(request_id, "request was cancelled")))
        return
    error = task.exception()
    if error is None:
        return
    if not isinstance(error, ModelportError):
        error = ModelportError(f"execution failed: {error}")
    stream.fail(error)


def build_stream_response(
    request: InferRequest, model: ServedModel, outputs: dict[str, np.ndarray]
) -> InferResponse:
    """A response from the outputs a decoupled model sent: those it produced, of those requested."""
    response = _response(request, model)
    wanted = [o.name for o in request.outputs] if request.outputs else [t.name for t in model.spec.outputs]
    for name in wanted:
        data = outputs.get(name)
        if data is None:
            continue
        data = np.asarray(data)
        response.outputs.append(
            InferOutput(name, datatype.from_numpy(data.dtype).name, tuple(data.shape), data)
        )
    return response


def _response(request: InferRequest, model: ServedModel) -> InferResponse:
    return InferResponse(model_name=model.spec.name, model_version=str(model.version), id=request.id)
