"""Requested outputs that go to shared memory: checked before inference, written after it."""

from __future__ import annotations

import numpy as np

from modelport.shm.params import BYTE_SIZE, OFFSET, REGION, SharedMemoryRef, parse_shared_memory_params
from modelport.shm.registry import RegionUse, SharedMemoryRegistry
from modelport.tensor.bytes_codec import encode_bytes
from modelport.tensor.records import InferRequest, InferResponse


class OutputRegions(dict[str, SharedMemoryRef]):
    """Output name -> where it goes; its regions stay in use (an unregister waits) while this lives."""

    __slots__ = ("use",)

    def __init__(self, refs: dict[str, SharedMemoryRef], use: RegionUse) -> None:
        super().__init__(refs)
        self.use = use


def output_regions(registry: SharedMemoryRegistry, request: InferRequest) -> dict[str, SharedMemoryRef]:
    """The outputs `request` wants in shared memory, bounds-checked (INVALID_ARG) before any work is done.

    Their regions count as in use until `write_output_regions`, or until the request is dropped.
    """
    refs: dict[str, SharedMemoryRef] = {}
    for out in request.outputs:
        ref = parse_shared_memory_params(out.parameters, out.name)
        if ref is not None:
            refs[out.name] = ref
    return OutputRegions(refs, registry.use(refs.values())) if refs else refs


def write_output_regions(
    registry: SharedMemoryRegistry, response: InferResponse, refs: dict[str, SharedMemoryRef]
) -> None:
    """Copy each such output into its region; its parameters then say where it went and how big it is."""
    try:
        for out in response.outputs:
            ref = refs.get(out.name)
            if ref is None:
                continue
            if out.datatype == "BYTES":
                blob: bytes | memoryview = encode_bytes(out.data)
            else:
                blob = np.ascontiguousarray(out.data).data.cast("B")
            registry.write(ref, blob, out.name)
            out.parameters = {REGION: ref.region, BYTE_SIZE: len(blob)}
            if ref.offset:
                out.parameters[OFFSET] = ref.offset
    finally:
        if isinstance(refs, OutputRegions):
            refs.use.release()
