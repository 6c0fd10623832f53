"""Transport-neutral errors: every failure the server reports is a ModelportError with an ErrorCode.

Hierarchy::

    ModelportError(code, message)
    +-- InvalidInput        INVALID_ARG     the client sent something wrong
    +-- ModelNotFound       NOT_FOUND       unknown model or version
    +-- ModelUnavailable    UNAVAILABLE     known but not ready, overloaded, or shutting down
    +-- Unsupported         UNSUPPORTED     a feature this server does not offer
    +-- AlreadyExists       ALREADY_EXISTS  something the request would create exists already
    +-- InternalError       INTERNAL        a real server or backend fault

UNKNOWN and CANCELLED (from Python-backend models) are passed as ModelportError's `code`.
Nothing here knows about transports: the one table in frontends/status.py maps each code to
both its HTTP status and its gRPC status code.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Triton's status codes."""

    INVALID_ARG = "INVALID_ARG"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"
    CANCELLED = "CANCELLED"


class ModelportError(Exception):
    """An error with a Triton status code and a message meant for the client."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}: {self.message!r})"


class InvalidInput(ModelportError):
    code = ErrorCode.INVALID_ARG


class ModelNotFound(ModelportError):
    code = ErrorCode.NOT_FOUND


class ModelUnavailable(ModelportError):
    code = ErrorCode.UNAVAILABLE


class Unsupported(ModelportError):
    code = ErrorCode.UNSUPPORTED


class AlreadyExists(ModelportError):
    code = ErrorCode.ALREADY_EXISTS


class InternalError(ModelportError):
    code = ErrorCode.INTERNAL


def with_request_id(request_id: str, message: str) -> str:
    """Prefix a message the way Triton's core prefixes request errors."""
    return f"[request id: {request_id or '<id_unknown>'}] {message}"
