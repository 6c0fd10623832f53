"""CUDA shared memory: opening a client's CUDA IPC handle and copying bytes to and from the device.

`CudaIpc` is the interface (open a handle as a `DeviceBuffer`); `CupyIpc` does it with CuPy's CUDA
runtime bindings, `HostIpc` keeps the "device" memory in host bytearrays (tests; no GPU needed).
`open_cuda_ipc()` gives None where there is no CuPy or no CUDA device: registration is then refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

IPC_HANDLE_BYTES = 64  # sizeof(cudaIpcMemHandle_t)


class DeviceBuffer(Protocol):
    """One opened region of device memory."""

    def read(self, offset: int, size: int) -> bytes | memoryview:
        """Copy `size` bytes at `offset` to the host."""
        ...

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Copy `data` to the device at `offset`."""
        ...

    def close(self) -> None: ...


class CudaIpc(Protocol):
    """Opens CUDA IPC handles that clients registered."""

    def open(self, raw_handle: bytes, device_id: int, byte_size: int) -> DeviceBuffer:
        """The device memory `raw_handle` names; ValueError / RuntimeError when it cannot be opened."""
        ...

    def device_count(self) -> int: ...


@dataclass(slots=True)
class _HostBuffer:
    memory: bytearray

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.memory[offset : offset + size])

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self.memory[offset : offset + len(data)] = data

    def close(self) -> None:
        pass


@dataclass(slots=True)
class HostIpc:
    """A stand-in for CUDA IPC: `allocations` maps a 64-byte handle to its "device" bytes."""

    devices: int = 1
    allocations: dict[bytes, bytearray] = field(default_factory=dict)

    def open(self, raw_handle: bytes, device_id: int, byte_size: int) -> DeviceBuffer:
        memory = self.allocations.get(raw_handle)
        if memory is None:
            raise RuntimeError("cudaErrorInvalidResourceHandle: invalid resource handle")
        if len(memory) < byte_size:
            raise ValueError(f"the allocation holds {len(memory)} bytes")
        return _HostBuffer(memory)

    def device_count(self) -> int:
        return self.devices


class _CupyBuffer:
    """Device memory opened from an IPC handle; copies go through cudaMemcpy on its device."""

    def __init__(self, cupy: Any, pointer: int, device_id: int) -> None:
        self._cupy = cupy
        self._pointer = pointer
        self._device_id = device_id

    def read(self, offset: int, size: int) -> memoryview:
        host = np.empty(size, np.uint8)
        runtime = self._cupy.cuda.runtime
        with self._cupy.cuda.Device(self._device_id):
            runtime.memcpy(host.ctypes.data, self._pointer + offset, size, runtime.memcpyDeviceToHost)
        return memoryview(host.data)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        source = np.frombuffer(data, np.uint8)
        runtime = self._cupy.cuda.runtime
        with self._cupy.cuda.Device(self._device_id):
            target = self._pointer + offset
            runtime.memcpy(target, source.ctypes.data, source.size, runtime.memcpyHostToDevice)

    def close(self) -> None:
        with self._cupy.cuda.Device(self._device_id):
            self._cupy.cuda.runtime.ipcCloseMemHandle(self._pointer)


class CupyIpc:
    """CUDA IPC through CuPy's runtime bindings."""

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy

    def open(self, raw_handle: bytes, device_id: int, byte_size: int) -> DeviceBuffer:
        runtime = self._cupy.cuda.runtime
        try:
            with self._cupy.cuda.Device(device_id):
                pointer = runtime.ipcOpenMemHandle(raw_handle, runtime.cudaIpcMemLazyEnablePeerAccess)
        except runtime.CUDARuntimeError as exc:
            raise RuntimeError(str(exc)) from None
        return _CupyBuffer(self._cupy, int(pointer), device_id)

    def device_count(self) -> int:
        return int(self._cupy.cuda.runtime.getDeviceCount())


def open_cuda_ipc() -> CudaIpc | None:
    """CuPy's CUDA IPC where CuPy and a CUDA device are here, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        ipc = CupyIpc(cupy)
        return ipc if ipc.device_count() > 0 else None
    except Exception as exc:  # CuPy raises its own CUDA error types when no driver is loaded
        log.debug("no CUDA shared memory: %s", exc)
        return None
