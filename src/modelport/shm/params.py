"""The `shared_memory_region/offset/byte_size` parameters of an input or requested output.

Both codecs turn their wire parameters into plain Python values first, so one parser serves
HTTP and gRPC, with Triton's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.errors import InvalidInput

REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"
KEYS = (REGION, OFFSET, BYTE_SIZE)


@dataclass(frozen=True, slots=True)
class SharedMemoryRef:
    """Where a tensor lives: `byte_size` bytes at `offset` inside registered region `region`."""

    region: str
    offset: int
    byte_size: int


def parse_shared_memory_params(params: Mapping[str, Any], tensor: str) -> SharedMemoryRef | None:
    """The tensor's shared-memory reference, None when it has none; INVALID_ARG when malformed."""
    if REGION not in params:
        for key in (OFFSET, BYTE_SIZE):
            if key in params:
                raise InvalidInput(
                    f"'{key}' can not be specified without '{REGION}' parameter for tensor '{tensor}'"
                )
        return None
    region = params[REGION]
    if not isinstance(region, str):
        raise InvalidInput(
            f"invalid value type for '{REGION}' parameter for tensor '{tensor}', expected string."
        )
    if BYTE_SIZE not in params:
        raise InvalidInput(
            f"'{BYTE_SIZE}' must be specified along with '{REGION}' parameter for tensor '{tensor}'"
        )
    offset = _non_negative(params.get(OFFSET, 0), OFFSET, tensor)
    byte_size = _non_negative(params[BYTE_SIZE], BYTE_SIZE, tensor)
    return SharedMemoryRef(region, offset, byte_size)


def is_in_shared_memory(params: Mapping[str, Any]) -> bool:
    """True for an output the server wrote into a region (its data does not travel in the response)."""
    return REGION in params


def _non_negative(value: Any, key: str, tensor: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(
            f"invalid value type for '{key}' parameter for tensor '{tensor}', expected integer."
        )
    if value < 0:
        raise InvalidInput(f"invalid value for '{key}' parameter for tensor '{tensor}', expected >= 0.")
    return value
