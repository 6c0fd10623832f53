"""Request tensor shapes: rank, sign and size checked before any data is read or any array is built."""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelport.errors import InvalidInput
from modelport.tensor.datatype import DataType

# numpy arrays have at most 64 dimensions.
MAX_DIMS = 64
INT64_MAX = (1 << 63) - 1
# A BYTES tensor is a numpy array of object pointers.
_POINTER_SIZE = 8


def checked_shape(dims: Sequence[int], dtype: DataType, name: str) -> tuple[int, ...]:
    """`dims` as a shape a numpy array of `dtype` can have, or INVALID_ARG saying why not.

    Triton's messages for a negative or overflowing dimension; beyond Triton, at most 64 dimensions,
    and no dimension so large that the array could not be described even when it holds no element
    (a zero elsewhere in the shape makes the element count 0, but numpy still refuses the shape).
    """
    shape = tuple(dims)
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"input '{name}' has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    if shape and min(shape) < 0:
        raise InvalidInput(f"All input dimensions should be specified for input '{name}', got {list(shape)}")
    count = math.prod(shape)
    if count > INT64_MAX:
        raise InvalidInput(f"element count for tensor '{name}' exceeds maximum size of {INT64_MAX}")
    itemsize = _POINTER_SIZE if dtype.is_bytes else max(dtype.itemsize, 1)
    if (count or math.prod(d for d in shape if d)) * itemsize > INT64_MAX:
        empty = " (a tensor of this shape cannot be described, even with no elements)" if 0 in shape else ""
        raise InvalidInput(f"byte size for tensor '{name}' exceeds maximum size of {INT64_MAX}{empty}")
    return shape
