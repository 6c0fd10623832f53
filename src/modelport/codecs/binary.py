"""Triton's binary tensor data extension: a JSON header followed by raw tensor bytes."""

from __future__ import annotations

from modelport.errors import InvalidInput

HEADER_LENGTH = "inference-header-content-length"


def split_body(body: bytes | bytearray, header_length: int | None) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary section of a request body (no copies)."""
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    if header_length < 0 or header_length > len(view):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length} is outside the request body "
            f"of {len(view)} bytes"
        )
    return view[:header_length], view[header_length:]


def parse_header_length(value: str | None) -> int | None:
    """The Inference-Header-Content-Length header as an integer, or None when absent."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got '{value}'") from None


class BinaryReader:
    """Hands out consecutive slices of the binary section, in input order."""

    def __init__(self, data: memoryview, model_name: str) -> None:
        self._data = data
        self._offset = 0
        self._model = model_name

    @property
    def model_name(self) -> str:
        return self._model

    def take(self, size: int, input_name: str) -> memoryview:
        remaining = len(self._data) - self._offset
        if size > remaining:
            raise InvalidInput(
                f"unexpected size for input '{input_name}', expecting {size - remaining} additional "
                f"bytes for model '{self._model}'"
            )
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise InvalidInput(f"unexpected additional input data for model '{self._model}'")


def join_response(header: bytes, blobs: list[memoryview | bytes]) -> tuple[bytes, int | None]:
    """The response body and its header length (None when no blob has bytes: plain JSON)."""
    if not any(len(b) for b in blobs):
        return header, None
    return b"".join([header, *blobs]), len(header)
