"""CUDA shared-memory regions through the registry, with host memory standing in for the device:
registration checks, status, bounds, reading inputs and writing outputs, unregistering."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import ErrorCode, ModelportError
from modelport.shm import SharedMemoryRef, SharedMemoryRegistry
from modelport.shm.cuda import HostIpc

HANDLE = bytes(range(64))


@pytest.fixture
def ipc() -> HostIpc:
    return HostIpc(devices=2, allocations={HANDLE: bytearray(64)})


@pytest.fixture
def registry(ipc: HostIpc) -> SharedMemoryRegistry:
    return SharedMemoryRegistry(cuda=lambda: ipc)


def _error(call: object) -> tuple[ErrorCode, str]:
    with pytest.raises(ModelportError) as info:
        call()  # type: ignore[operator]
    return info.value.code, info.value.message


def test_register_status_unregister(registry: SharedMemoryRegistry) -> None:
    registry.register_cuda("g", HANDLE, 1, 64)
    assert [r.to_json() for r in registry.cuda_status()] == [{"name": "g", "device_id": 1, "byte_size": 64}]
    assert registry.cuda_status("g")[0].device_id == 1
    assert registry.system_status() == []  # the kinds are listed apart
    assert _error(lambda: registry.system_status("g"))[1] == "Unable to find system shared memory region: 'g'"
    assert _error(lambda: registry.register_cuda("g", HANDLE, 0, 64))[0] is ErrorCode.ALREADY_EXISTS
    registry.unregister_system()  # leaves CUDA regions
    assert len(registry.cuda_status()) == 1
    registry.unregister_cuda("g")
    assert registry.cuda_status() == []


@pytest.mark.parametrize(
    ("handle", "device", "size", "fragment"),
    [
        (b"\0" * 10, 0, 64, "raw_handle must be the 64 bytes of a cudaIpcMemHandle_t"),
        (HANDLE, 0, 0, "byte_size > 0"),
        (HANDLE, 5, 64, "invalid device id 5"),
        (b"\1" * 64, 0, 64, "unable to open the CUDA IPC handle: cudaErrorInvalidResourceHandle"),
        (HANDLE, 0, 128, "unable to open the CUDA IPC handle: the allocation holds 64 bytes"),
    ],
)
def test_bad_registrations_are_client_errors(
    registry: SharedMemoryRegistry, handle: bytes, device: int, size: int, fragment: str
) -> None:
    code, message = _error(lambda: registry.register_cuda("g", handle, device, size))
    assert code is ErrorCode.INVALID_ARG and fragment in message, message
    assert registry.cuda_status() == []


def test_inputs_are_read_from_and_outputs_written_to_the_device(
    registry: SharedMemoryRegistry, ipc: HostIpc
) -> None:
    registry.register_cuda("g", HANDLE, 0, 64)
    ipc.allocations[HANDLE][:16] = np.arange(4, dtype=np.float32).tobytes()
    registry.use([SharedMemoryRef("g", 0, 16)]).release()
    data = np.frombuffer(registry.read(SharedMemoryRef("g", 0, 16)), np.float32)
    assert data.tolist() == [0.0, 1.0, 2.0, 3.0]
    registry.write(SharedMemoryRef("g", 32, 16), np.full(4, 7, np.float32).tobytes(), "OUT")
    assert np.frombuffer(bytes(ipc.allocations[HANDLE][32:48]), np.float32).tolist() == [7.0] * 4


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        (SharedMemoryRef("g", 64, 4), "Invalid offset for shared memory region: 'g'"),
        (SharedMemoryRef("g", 60, 8), "Invalid offset + byte size for shared memory region: 'g'"),
        (SharedMemoryRef("nope", 0, 4), "Unable to find shared memory region: 'nope'"),
    ],
)
def test_bounds_and_unknown_regions(
    registry: SharedMemoryRegistry, ref: SharedMemoryRef, fragment: str
) -> None:
    registry.register_cuda("g", HANDLE, 0, 64)
    for call in (lambda: registry.read(ref), lambda: registry.write(ref, b"\0" * 4, "OUT")):
        code, message = _error(call)
        assert code is ErrorCode.INVALID_ARG and message.startswith(fragment), message


def test_an_output_larger_than_its_region_slice_is_refused(registry: SharedMemoryRegistry) -> None:
    registry.register_cuda("g", HANDLE, 0, 64)
    code, message = _error(lambda: registry.write(SharedMemoryRef("g", 0, 8), b"\0" * 16, "OUT"))
    assert code is ErrorCode.INVALID_ARG and "should be at least 16 bytes" in message
