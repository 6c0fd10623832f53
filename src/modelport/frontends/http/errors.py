"""The HTTP frontend's error answers: status, headers and a `{"error": ...}` body, for every route."""

from __future__ import annotations

import orjson

from modelport.errors import ModelportError, Unsupported
from modelport.frontends.http.body import BodyTooLarge
from modelport.frontends.status import http_status
from modelport.observability.redaction import hide_paths

Headers = list[tuple[bytes, bytes]]
JSON = b"application/json"


def error_parts(exc: ModelportError) -> tuple[int, Headers, bytes]:
    """The answer to a ModelportError: its status from the shared table (413 for an oversize body)."""
    status = 413 if isinstance(exc, BodyTooLarge) else http_status(exc.code)
    headers = [(b"content-type", JSON)]
    if isinstance(exc, Unsupported):
        headers.append((b"accept-encoding", b"gzip, deflate"))
    return status, headers, orjson.dumps({"error": exc.message})


def internal_error_parts(exc: Exception) -> tuple[int, Headers, bytes]:
    """The 500 answer to an unexpected exception, naming it."""
    message = f"internal server error: {type(exc).__name__}: {hide_paths(str(exc))}"
    return 500, [(b"content-type", JSON)], orjson.dumps({"error": message})
