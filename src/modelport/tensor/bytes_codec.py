"""Triton's BYTES tensor encoding: each element is a 4-byte little-endian length and its bytes.

Decoding is bounded by the element count the tensor's shape gives: a buffer holding more
elements is refused as soon as one element too many is seen, so a request cannot make the
server walk millions of elements its shape does not account for. Buffers whose elements all
have the same length (a common case, and the cheapest way to pack many elements) are checked
and split with numpy; other buffers are walked element by element.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from modelport.errors import InvalidInput

_LEN = 4
_PREFIX = np.dtype("<u4")
_NATIVE_LITTLE = sys.byteorder == "little"
_FEW_ELEMENTS = 1024


def decode_bytes(
    buffer: bytes | bytearray | memoryview, count: int | None = None, where: str = "the BYTES tensor"
) -> np.ndarray:
    """Split a length-prefixed buffer into a 1-D object array of `bytes`.

    With `count`, the buffer must hold exactly that many elements (Triton's messages otherwise);
    `where` names the tensor in them.
    """
    view = memoryview(buffer).cast("B")
    uniform = _uniform_length(view, count)
    if uniform is not None:
        return _split_uniform(view, uniform)
    # Slicing bytes is the fastest walk; copying the buffer into bytes pays off for many elements
    # only (a shape of a few elements refuses a buffer of millions without copying it).
    few = count is not None and count <= _FEW_ELEMENTS
    pieces = _walk(view if few else bytes(view), count, where)
    if count is not None and len(pieces) != count:
        raise InvalidInput(f"expected {count} string elements for {where}, got {len(pieces)}")
    array = np.empty(len(pieces), dtype=object)
    array[:] = [bytes(p) for p in pieces] if few else pieces
    return array


def _uniform_length(data: memoryview, count: int | None) -> int | None:
    """The one element length of a buffer whose elements all have it (exactly `count` of them), else None."""
    size = len(data)
    if size < _LEN:
        return None
    length = int.from_bytes(data[:_LEN], "little")
    stride = _LEN + length
    elements = size // stride if count is None else count
    if elements == 0 or elements * stride != size:
        return None
    rows = np.frombuffer(data, dtype=np.uint8).reshape(elements, stride)
    prefixes = np.ascontiguousarray(rows[:, :_LEN]).view(_PREFIX)
    return length if bool((prefixes == length).all()) else None


def _split_uniform(data: memoryview, length: int) -> np.ndarray:
    stride = _LEN + length
    elements = len(data) // stride
    if length == 0:
        array = np.empty(elements, dtype=object)
        array[:] = b""
        return array
    rows = np.frombuffer(data, dtype=np.uint8).reshape(elements, stride)
    # numpy turns each fixed-size raw record into a bytes object, trailing NUL bytes included.
    payload = np.ascontiguousarray(rows[:, _LEN:]).view(f"V{length}").reshape(elements)
    return payload.astype(object)


def _walk(data: bytes | memoryview, count: int | None, where: str) -> list[bytes | memoryview]:
    """The elements of `data` in order (slices of it), stopping with an error at element `count` + 1."""
    size = len(data)
    limit = size // _LEN if count is None else min(count, size // _LEN)
    lengths = _length_views(data) if _NATIVE_LITTLE else None
    items: list[bytes | memoryview] = []
    append = items.append
    offset = 0
    for _ in range(limit):
        if offset >= size:
            return items
        if offset + _LEN > size:
            break
        if lengths is not None:
            length = lengths[offset & 3][offset >> 2]
        else:
            length = int.from_bytes(data[offset : offset + _LEN], "little")
        start = offset + _LEN
        offset = start + length
        if offset > size:
            raise InvalidInput(
                f"truncated BYTES element {len(items)} of {where}: its length indicator says {length} "
                f"bytes, {size - start} remain"
            )
        append(data[start:offset])
    if offset >= size:
        return items
    if offset + _LEN > size:
        raise InvalidInput(
            f"incomplete string length indicator for {where}, expecting {_LEN} bytes but only "
            f"{size - offset} bytes available"
        )
    raise InvalidInput(
        f"unexpected number of string elements {len(items) + 1} for {where}, expecting {len(items)}"
    )


def _length_views(data: bytes | memoryview) -> list[memoryview]:
    """The length indicators readable at every byte offset p, as views[p % 4][p // 4] (no copies)."""
    view, size = memoryview(data), len(data)
    return [view[r : r + max(size - r, 0) // _LEN * _LEN].cast("I") for r in range(_LEN)]


def encode_bytes(array: np.ndarray) -> bytes:
    """Serialise an array of bytes/str (any shape, row-major) into the length-prefixed form."""
    items = [as_bytes(item) for item in array.reshape(-1)]
    if not items:
        return b""
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    first = int(lengths[0])
    if bool((lengths == first).all()):  # one length: prefixes and payload laid out by numpy
        out = np.empty((len(items), _LEN + first), dtype=np.uint8)
        out[:, :_LEN] = np.frombuffer(first.to_bytes(_LEN, "little"), dtype=np.uint8)
        out[:, _LEN:] = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(len(items), first)
        return out.tobytes()
    parts: list[Any] = [None] * (2 * len(items))
    parts[0::2] = lengths.astype(_PREFIX).view("V4").astype(object)  # the prefixes as bytes objects
    parts[1::2] = items
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
