"""The response cache key of a request: a digest of everything that decides the model's outputs.

That is Triton's key (model name, version, each input's name and bytes) plus what Triton leaves
out but a model can see: each input's datatype and shape, the outputs asked for, and the request
parameters a model reads. Inputs are hashed in name order, straight from their buffers; a
BYTES tensor is hashed element by element, each with its length.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np

from modelport.backends.python.convert import visible_parameters
from modelport.tensor.records import InferInput, InferRequest

DIGEST_BYTES = 16


def key_prefix(model: str, version: int, owner: int) -> bytes:
    """What every key of one loaded model version starts from (`owner`: its cache token)."""
    return f"{model}\0{version}\0{owner}".encode()


def request_key(prefix: bytes, request: InferRequest) -> bytes:
    """The cache key of a validated request for the model version `prefix` names."""
    digest = hashlib.blake2b(prefix, digest_size=DIGEST_BYTES)
    inputs = request.inputs
    if len(inputs) > 1:
        inputs = sorted(inputs, key=lambda i: i.name)
    for tensor in inputs:
        _add_input(digest, tensor)
    if request.outputs:
        _add(digest, b"\1outputs")
        for name in sorted(o.name for o in request.outputs):
            _add(digest, name.encode())
    if request.parameters:
        visible = visible_parameters(request.parameters)
        if visible:
            _add(digest, b"\1parameters")
            _add(digest, repr(sorted(visible.items())).encode())
    return digest.digest()


def _add_input(digest: Any, tensor: InferInput) -> None:
    _add(digest, tensor.name.encode())
    _add(digest, tensor.datatype.encode())
    _add(digest, struct.pack(f"<{len(tensor.shape)}q", *tensor.shape))
    data = tensor.data
    if data.dtype == object:
        digest.update(struct.pack("<Q", data.size))
        for item in data.flat:
            _add(digest, _element_bytes(item))
        return
    if not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    digest.update(struct.pack("<Q", data.nbytes))
    digest.update(data.reshape(-1).view(np.uint8))


def _add(digest: Any, field: bytes) -> None:
    """One length-prefixed field, so that no two different sequences of fields hash alike."""
    digest.update(struct.pack("<Q", len(field)))
    digest.update(field)


def _element_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return bytes(item)  # type: ignore[call-overload, no-any-return]
