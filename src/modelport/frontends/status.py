"""The one table from ErrorCode to HTTP status and gRPC status code."""

from __future__ import annotations

from modelport.errors import ErrorCode

# ErrorCode -> (HTTP status, gRPC status code name)
STATUS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_ARG: (400, "INVALID_ARGUMENT"),
    ErrorCode.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorCode.UNAVAILABLE: (503, "UNAVAILABLE"),
    ErrorCode.UNSUPPORTED: (501, "UNIMPLEMENTED"),
    ErrorCode.ALREADY_EXISTS: (400, "ALREADY_EXISTS"),
    ErrorCode.INTERNAL: (500, "INTERNAL"),
    ErrorCode.UNKNOWN: (400, "UNKNOWN"),
    ErrorCode.CANCELLED: (400, "CANCELLED"),
}


def http_status(code: ErrorCode) -> int:
    return STATUS[code][0]


def grpc_status_name(code: ErrorCode) -> str:
    return STATUS[code][1]
