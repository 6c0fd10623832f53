"""The W3C trace context a client sends through the gRPC frontend (its `traceparent` metadata)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def traceparent_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The `traceparent` entry of gRPC invocation metadata (keys arrive lower-case), if any."""
    if not metadata:
        return None
    for key, value in metadata:
        if key == "traceparent":
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None
