"""Tensors in a shared-memory segment: how they are laid out, written and read by both processes.

The server writes a batch's inputs into one segment and the model process reads them as numpy
views; the model process writes the outputs into a second segment and the server copies them
out. BYTES (object) tensors travel inline in the message, pickled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

ALIGNMENT = 64
INITIAL_BYTES = 1 << 20  # Triton's python backend also starts each instance at 1 MiB


@dataclass(frozen=True, slots=True)
class TensorRef:
    """Where one tensor is: at `offset` in the segment, or `inline` (object arrays, overflow)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int = -1
    inline: Any = None


def aligned(size: int) -> int:
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def segment_bytes(arrays: list[np.ndarray]) -> int:
    """Bytes the numeric arrays need in a segment."""
    return sum(aligned(a.nbytes) for a in arrays if a.dtype != object)


def write(
    segment: shared_memory.SharedMemory | None, items: list[tuple[str, np.ndarray]], start: int = 0
) -> tuple[list[TensorRef], int]:
    """Copy numeric arrays into `segment` from `start` (inline when there's no room); returns refs, end."""
    refs: list[TensorRef] = []
    offset = start
    for name, array in items:
        if array.dtype == object or segment is None or offset + array.nbytes > segment.size:
            refs.append(TensorRef(name, array.dtype.str, tuple(array.shape), inline=array))
            continue
        target: np.ndarray = np.ndarray(array.shape, array.dtype, buffer=segment.buf, offset=offset)
        target[...] = array
        del target
        refs.append(TensorRef(name, array.dtype.str, tuple(array.shape), offset=offset))
        offset += aligned(array.nbytes)
    return refs, offset


def view(segment: shared_memory.SharedMemory | None, ref: TensorRef) -> np.ndarray:
    """The tensor as a numpy view of the segment (no copy)."""
    if ref.offset < 0 or segment is None:
        inline: np.ndarray = np.asarray(ref.inline)
        return inline
    shared: np.ndarray = np.ndarray(ref.shape, np.dtype(ref.dtype), buffer=segment.buf, offset=ref.offset)
    return shared


def copy(segment: shared_memory.SharedMemory | None, ref: TensorRef) -> np.ndarray:
    """The tensor as an array of its own (the segment is reused by the next batch)."""
    if ref.offset < 0 or segment is None:
        return view(segment, ref)
    source = view(segment, ref)
    result: np.ndarray = source.copy()
    del source
    return result


def create(size: int) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(create=True, size=max(size, INITIAL_BYTES))


def destroy(segment: shared_memory.SharedMemory | None) -> None:
    """Close and unlink a segment this process created."""
    if segment is None:
        return
    with contextlib.suppress(BufferError):
        segment.close()
    with contextlib.suppress(FileNotFoundError):
        segment.unlink()


class Attached:
    """The segments another process created, attached by name and re-attached when the name changes."""

    def __init__(self) -> None:
        self._segments: dict[str, shared_memory.SharedMemory] = {}
        self._retired: list[shared_memory.SharedMemory] = []

    def get(self, name: str) -> shared_memory.SharedMemory:
        segment = self._segments.get(name)
        if segment is None:
            segment = shared_memory.SharedMemory(name=name)
            self._segments[name] = segment
        return segment

    def keep_only(self, names: set[str]) -> None:
        """Detach from segments no longer used (model code may still hold views: then keep the mapping)."""
        for name in [n for n in self._segments if n not in names]:
            segment = self._segments.pop(name)
            try:
                segment.close()
            except BufferError:
                self._retired.append(segment)
