"""Triton's BYTES tensor encoding: each element is a 4-byte little-endian length and its bytes."""

from __future__ import annotations

import numpy as np

from modelport.errors import InvalidInput

_LEN = 4


def decode_bytes(buffer: bytes | memoryview, count: int | None = None) -> np.ndarray:
    """Split a length-prefixed buffer into a 1-D object array of `bytes`.

    With `count`, the buffer must hold exactly that many elements.
    """
    view = memoryview(buffer).cast("B")
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + _LEN > end:
            raise InvalidInput("truncated BYTES element: incomplete 4-byte length prefix")
        length = int.from_bytes(view[offset : offset + _LEN], "little")
        offset += _LEN
        if offset + length > end:
            raise InvalidInput(
                f"truncated BYTES element: length prefix says {length} bytes, {end - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if count is not None and len(items) != count:
        raise InvalidInput(f"expected {count} BYTES elements, got {len(items)}")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def encode_bytes(array: np.ndarray) -> bytes:
    """Serialise an array of bytes/str (any shape, row-major) into the length-prefixed form."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = as_bytes(item)
        parts.append(len(data).to_bytes(_LEN, "little"))
        parts.append(data)
    return b"".join(parts)


def as_bytes(item: object) -> bytes:
    """One BYTES element as bytes (str is UTF-8 encoded)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.bytes_):
        return bytes(item)
    return str(item).encode("utf-8")
