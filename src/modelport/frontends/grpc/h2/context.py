"""CallContext: the part of grpc.aio's ServicerContext that the servicer and its wrappers use.

The handlers in frontends/grpc run unchanged on the h2 stack: they read invocation metadata and end
a call with `await context.abort(code, details)`, which raises grpc.aio.AbortError as grpc does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NoReturn

import grpc

from modelport.frontends.grpc.h2.headers import Metadatum


class CallContext:
    """One call's metadata, deadline and the status it is to end with."""

    __slots__ = ("_cancelled", "_code", "_deadline", "_details", "_done", "_metadata", "_peer", "_trailing")

    def __init__(self, metadata: tuple[Metadatum, ...], deadline: float | None, peer: str) -> None:
        self._metadata = metadata
        self._deadline = deadline  # time.monotonic() value, or None
        self._peer = peer
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._cancelled = False
        self._done = False

    # --- what the handlers read -------------------------------------------------------------
    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._done

    # --- how they set the outcome -----------------------------------------------------------
    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()
    ) -> NoReturn:
        """End the call with `code` and `details`: raises grpc.aio.AbortError, as grpc.aio does."""
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status other than OK")
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError("Locally aborted.")

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(trailing_metadata)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    # --- the call's side --------------------------------------------------------------------
    def status(self) -> tuple[int, str]:
        """The gRPC status number and message set by the handler (OK when none was)."""
        code = self._code
        return (0 if code is None else int(code.value[0])), self._details

    def mark_cancelled(self) -> None:
        self._cancelled = True
        self._done = True

    def mark_done(self) -> None:
        self._done = True
