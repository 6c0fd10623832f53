"""Raw input bytes (a request body slice, a raw_input_contents entry, a shared-memory region) as arrays."""

from __future__ import annotations

import math

import numpy as np

from modelport.errors import InvalidInput
from modelport.tensor import datatype
from modelport.tensor.bytes_codec import decode_bytes


def array_from_buffer(
    chunk: bytes | memoryview,
    dtype: datatype.DataType,
    shape: tuple[int, ...],
    input_name: str,
    model_name: str,
) -> np.ndarray:
    """`chunk` as an array of `shape`: a view for fixed-size datatypes, decoded elements for BYTES.

    The chunk must hold exactly the tensor; otherwise the error is Triton's byte-size mismatch.
    """
    count = math.prod(shape)
    if dtype.is_bytes:
        where = f"inference input '{input_name}' for model '{model_name}'"
        return decode_bytes(chunk, count, where).reshape(shape)
    if dtype.dtype is None:
        raise InvalidInput(f"datatype {dtype.name} of input '{input_name}' is not supported by this server")
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input byte size mismatch for input '{input_name}' for model '{model_name}'. "
            f"Expected {expected}, got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype.dtype).reshape(shape)
