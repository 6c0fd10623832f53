"""InferenceCaller: lets model code running on worker threads send requests through the server core.

Python models call other loaded models (BLS) from their instance threads. The server core builds
its caller with itself as the target and hands it to the backends; `start` (on the event loop,
when the server starts) binds it to that loop. Each call is then scheduled on the loop, so it goes
through the target model's own validation and scheduler like any frontend request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from modelport.errors import ModelportError, ModelUnavailable
from modelport.tensor.records import InferRequest, InferResponse

_UNARY_BLS = "BLS exec() without decoupled=True"

# One streamed result and whether it is the last for its request (modelport.core.streaming.StreamItem).
StreamResult = tuple[InferResponse | ModelportError, bool]


class InferenceTarget(Protocol):
    """What the caller needs from the server core."""

    async def infer(self, request: InferRequest, *, endpoint: str = ...) -> InferResponse: ...

    def infer_stream(self, request: InferRequest) -> AsyncIterator[Any]: ...

    def is_model_ready(self, name: str, version: str = "") -> bool: ...


class InferenceCaller:
    """Runs requests on the server's event loop on behalf of code on other threads."""

    def __init__(self, target: InferenceTarget) -> None:
        self._target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def start(self) -> None:
        """Bind to the running event loop (call from the loop's thread)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def infer(self, request: InferRequest) -> concurrent.futures.Future[InferResponse]:
        """Submit `request`; the future resolves with its response or raises its ModelportError."""
        target, loop = self._bound()
        return asyncio.run_coroutine_threadsafe(target.infer(request, endpoint=_UNARY_BLS), loop)

    def stream(
        self, request: InferRequest, on_result: Callable[[StreamResult | None], None]
    ) -> concurrent.futures.Future[None]:
        """Submit `request` as a stream; `on_result` gets each result, then None (on the loop thread)."""
        target, loop = self._bound()

        async def pump() -> None:
            try:
                async for item in target.infer_stream(request):
                    on_result((item[0], item[1]))
            except ModelportError as exc:
                on_result((exc, True))
            finally:
                on_result(None)

        return asyncio.run_coroutine_threadsafe(pump(), loop)

    def is_model_ready(self, name: str, version: str = "") -> bool:
        target, _ = self._bound()
        return target.is_model_ready(name, version)

    def _bound(self) -> tuple[InferenceTarget, asyncio.AbstractEventLoop]:
        if self._loop is None:
            raise ModelUnavailable("calls to other models are not available before the server starts")
        if threading.get_ident() == self._loop_thread:
            raise ModelUnavailable(
                "calls to other models must not be made from the server's event loop thread"
            )
        return self._target, self._loop
