"""Triton's shared-memory extensions: the region registry and the tensor parameters that point into it."""

from modelport.shm.params import SharedMemoryRef, is_in_shared_memory, parse_shared_memory_params
from modelport.shm.registry import RegionReader, RegionStatus, RequestRegions, SharedMemoryRegistry

__all__ = [
    "RegionReader",
    "RegionStatus",
    "RequestRegions",
    "SharedMemoryRef",
    "SharedMemoryRegistry",
    "is_in_shared_memory",
    "parse_shared_memory_params",
]
