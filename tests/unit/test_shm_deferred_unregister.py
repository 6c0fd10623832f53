"""Unregistering a shared-memory region a request will write its outputs to waits for the request, as in
Triton: the region stays registered (listed, usable, its name taken) until its last use ends, then goes
by itself. A region only read from goes at once; the arrays viewing it keep its mapping."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory

import numpy as np
import pytest

from modelport.errors import ErrorCode, ModelportError
from modelport.shm import SharedMemoryRef, SharedMemoryRegistry
from modelport.shm.outputs import output_regions, write_output_regions
from modelport.tensor.records import InferOutput, InferRequest, InferResponse, RequestedOutput

SIZE = 4096


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    seg = shared_memory.SharedMemory(name=f"mp_defer_{uuid.uuid4().hex[:10]}", create=True, size=SIZE)
    try:
        yield seg
    finally:
        seg.close()
        seg.unlink()


@pytest.fixture
def registry(segment: shared_memory.SharedMemory) -> Iterator[SharedMemoryRegistry]:
    reg = SharedMemoryRegistry()
    reg.register_system("in", "/" + segment.name, 0, 64)
    reg.register_system("out", "/" + segment.name, 64, 64)
    yield reg
    reg.close()


def _names(registry: SharedMemoryRegistry) -> list[str]:
    return [r.name for r in registry.system_status()]


def _request_for_output() -> InferRequest:
    params = {"shared_memory_region": "out", "shared_memory_byte_size": 16}
    return InferRequest(model_name="m", outputs=[RequestedOutput("OUT", parameters=params)])


def _response() -> InferResponse:
    response = InferResponse(model_name="m", model_version="1")
    response.outputs.append(InferOutput("OUT", "INT32", (4,), np.arange(4, dtype=np.int32)))
    return response


def test_a_region_in_use_stays_listed_and_its_name_taken_until_the_request_ends(
    registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
) -> None:
    regions = output_regions(registry, _request_for_output())
    registry.unregister_system()
    assert _names(registry) == ["out"]  # "in" was not in use: it went at once
    with pytest.raises(ModelportError) as raised:
        registry.register_system("out", "/" + segment.name, 64, 64)
    assert raised.value.code is ErrorCode.ALREADY_EXISTS
    assert raised.value.message == "shared memory region 'out' already in manager"
    second = output_regions(registry, _request_for_output())  # a region waiting to go is still usable
    write_output_regions(registry, _response(), regions)
    assert _names(registry) == ["out"]  # the second request still uses it
    write_output_regions(registry, _response(), second)
    assert _names(registry) == []
    registry.register_system("out", "/" + segment.name, 64, 64)  # the name is free again
    assert _names(registry) == ["out"]


def test_an_input_region_goes_at_once_and_its_views_stay_readable(
    registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
) -> None:
    segment.buf[:8] = np.array([5, 6], np.int32).tobytes()
    array = np.frombuffer(registry.read(SharedMemoryRef("in", 0, 8)), np.int32)
    registry.unregister_system("in")
    assert _names(registry) == ["out"]
    assert array.tolist() == [5, 6]  # the mapping lives until the last view goes away


def test_an_output_region_unregistered_during_inference_still_takes_the_results(
    registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
) -> None:
    request = _request_for_output()
    regions = output_regions(registry, request)
    registry.unregister_system("out")  # while the model runs
    assert _names(registry) == ["in", "out"]
    response = _response()
    write_output_regions(registry, response, regions)
    assert np.frombuffer(segment.buf[64:80], np.int32).tolist() == [0, 1, 2, 3]
    assert response.outputs[0].parameters["shared_memory_byte_size"] == 16
    assert _names(registry) == ["in"]


def test_a_request_that_fails_before_writing_releases_its_output_region(
    registry: SharedMemoryRegistry,
) -> None:
    regions = output_regions(registry, _request_for_output())
    registry.unregister_system("out")
    assert _names(registry) == ["in", "out"]
    del regions  # the request is dropped: no collection needed
    assert _names(registry) == ["in"]


def test_a_bad_reference_takes_no_use(registry: SharedMemoryRegistry) -> None:
    request = _request_for_output()
    request.outputs.append(
        RequestedOutput("BAD", parameters={"shared_memory_region": "in", "shared_memory_byte_size": 999})
    )
    with pytest.raises(ModelportError):
        output_regions(registry, request)
    registry.unregister_system()
    assert _names(registry) == []
