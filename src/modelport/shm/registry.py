"""SharedMemoryRegistry: the POSIX shared-memory regions clients registered, mapped into this process.

Regions are opened with shm_open and mapped once at registration; inputs are read as views of the
mapping and outputs are written into it. CUDA regions are opened from the client's CUDA IPC handle
(shm/cuda.py); inputs are copied from the device and outputs to it, with the same bounds checks.

As in Triton, unregistering a region a request reads inputs from or writes outputs to waits for the
request: the region stays registered (listed, usable, its name taken) until its last use ends, then
goes. The mapping itself outlives that for as long as arrays still view it.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelport.errors import (
    AlreadyExists,
    ErrorCode,
    InternalError,
    InvalidInput,
    ModelportError,
    Unsupported,
)
from modelport.shm.cuda import IPC_HANDLE_BYTES, CudaIpc, DeviceBuffer, open_cuda_ipc
from modelport.shm.params import SharedMemoryRef

try:  # the module multiprocessing.shared_memory is built on; absent on Windows
    import _posixshmem
except ImportError:  # pragma: no cover - POSIX only
    _posixshmem = None

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """One registered system region as the status APIs report it."""

    name: str
    key: str
    offset: int
    byte_size: int

    def to_json(self) -> dict[str, str | int]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


@dataclass(frozen=True, slots=True)
class CudaRegionStatus:
    """One registered CUDA region as the status APIs report it."""

    name: str
    device_id: int
    byte_size: int

    def to_json(self) -> dict[str, str | int]:
        return {"name": self.name, "device_id": self.device_id, "byte_size": self.byte_size}


@dataclass(slots=True, eq=False)
class _Region:
    status: RegionStatus | CudaRegionStatus
    mapping: mmap.mmap | None  # None for a CUDA region
    view: memoryview | None = field(repr=False)  # exactly [offset, offset + byte_size) of the shm object
    device: DeviceBuffer | None = None  # a CUDA region's device memory
    uses: int = 0  # requests reading inputs from it or writing outputs to it
    unregistered: bool = False  # unregister was asked while in use: it goes when `uses` drops to 0

    @property
    def is_cuda(self) -> bool:
        return self.device is not None

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            return
        assert self.view is not None and self.mapping is not None
        # Arrays still viewing the region (a request reading its inputs) keep the mapping alive:
        # it is unmapped when the last of them goes away.
        with contextlib.suppress(BufferError):
            self.view.release()
            self.mapping.close()


class RegionUse:
    """Regions a request uses until `release()` (or until this object is collected, whichever is first)."""

    __slots__ = ("__weakref__", "_release")

    def __init__(self, registry: SharedMemoryRegistry, regions: list[_Region]) -> None:
        self._release = weakref.finalize(self, registry._release, regions)

    def release(self) -> None:
        self._release()


class SharedMemoryRegistry:
    """Registered regions by name; the namespace Triton shares between system and CUDA regions."""

    def __init__(self, cuda: Callable[[], CudaIpc | None] = open_cuda_ipc) -> None:
        self._regions: dict[str, _Region] = {}
        self._open_cuda = cuda  # called at the first CUDA registration: CUDA starts only if asked for
        self._cuda: CudaIpc | None = None
        # A use may end on any thread (a dropped request is collected where it is dropped); RLock:
        # that can happen while this thread holds the lock.
        self._lock = threading.RLock()

    # --- system regions ------------------------------------------------------------------
    def register_system(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Open `key` and map `[offset, offset + byte_size)` of it under `name`."""
        if not name:
            raise InvalidInput("failed to register shared memory region: a region name is required")
        if name in self._regions:  # also while an unregister waits for its requests, as in Triton
            raise AlreadyExists(f"shared memory region '{name}' already in manager")
        if _posixshmem is None:  # pragma: no cover - POSIX only
            raise Unsupported("Shared memory feature is currently not supported on this platform")
        if offset < 0 or byte_size <= 0:
            raise InvalidInput(
                f"failed to register shared memory region '{name}': invalid args "
                f"(offset must be >= 0 and byte_size > 0, got offset {offset}, byte_size {byte_size})"
            )
        try:
            fd = _posixshmem.shm_open(key, os.O_RDWR, mode=0o600)
        except OSError:
            raise InternalError(f"Unable to open shared memory region: '{key}'") from None
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise InvalidInput(
                    f"failed to register shared memory region '{name}': invalid args "
                    f"(offset {offset} + byte_size {byte_size} exceeds the {size} bytes of '{key}')"
                )
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            mapping = mmap.mmap(fd, offset + byte_size - start, offset=start)
        except OSError as exc:
            raise InvalidInput(f"failed to register shared memory region '{name}': {exc}") from None
        finally:
            os.close(fd)
        view = memoryview(mapping)[offset - start :]
        self._add(_Region(RegionStatus(name, key, offset, byte_size), mapping, view))

    def _add(self, region: _Region) -> None:
        with self._lock:
            if region.status.name in self._regions:
                region.close()
                raise AlreadyExists(f"shared memory region '{region.status.name}' already in manager")
            self._regions[region.status.name] = region

    def unregister_system(self, name: str = "") -> None:
        """Drop one system region, or every one when `name` is empty; unknown names are fine.

        A region in use is dropped when its last request ends.
        """
        self._unregister(name, cuda=False)

    def _unregister(self, name: str, *, cuda: bool) -> None:
        with self._lock:
            for region_name in [name] if name else list(self._regions):
                region = self._regions.get(region_name)
                if region is None or region.is_cuda != cuda:
                    continue
                if region.uses:
                    region.unregistered = True
                    log.debug("shared memory region '%s' goes when its requests end", region_name)
                else:
                    del self._regions[region_name]
                    region.close()

    def system_status(self, name: str = "") -> list[RegionStatus]:
        """Every system region, or the one called `name` (NOT_FOUND when unknown)."""
        found = self._status(name, cuda=False, kind="system")
        return [s for s in found if isinstance(s, RegionStatus)]

    def _status(self, name: str, *, cuda: bool, kind: str) -> list[RegionStatus | CudaRegionStatus]:
        if not name:
            with self._lock:  # a request ending on another thread may drop a region meanwhile
                return [r.status for r in self._regions.values() if r.is_cuda == cuda]
        region = self._regions.get(name)
        if region is None or region.is_cuda != cuda:
            raise ModelportError(f"Unable to find {kind} shared memory region: '{name}'", ErrorCode.NOT_FOUND)
        return [region.status]

    def close(self) -> None:
        self.unregister_system()
        self.unregister_cuda()

    # --- CUDA regions --------------------------------------------------------------------
    def register_cuda(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Open the client's CUDA IPC handle (`cudaIpcMemHandle_t` bytes) under `name`."""
        failed = f"failed to register CUDA shared memory region '{name}'"
        if not name:
            raise InvalidInput("failed to register CUDA shared memory region: a region name is required")
        if name in self._regions:
            raise AlreadyExists(f"shared memory region '{name}' already in manager")
        if self._cuda is None:
            self._cuda = self._open_cuda()
        if self._cuda is None:
            raise InvalidInput(
                f"{failed}: this server has no CUDA device (or CuPy is not installed); "
                f"use system shared memory, or a server on a GPU machine"
            )
        if len(raw_handle) != IPC_HANDLE_BYTES or byte_size <= 0:
            raise InvalidInput(
                f"{failed}: invalid args (raw_handle must be the {IPC_HANDLE_BYTES} bytes of a "
                f"cudaIpcMemHandle_t and byte_size > 0; got {len(raw_handle)} bytes, byte_size {byte_size})"
            )
        if not 0 <= device_id < self._cuda.device_count():
            raise InvalidInput(f"{failed}: invalid device id {device_id}")
        try:
            device = self._cuda.open(raw_handle, device_id, byte_size)
        except (ValueError, RuntimeError) as exc:
            raise InvalidInput(f"{failed}: unable to open the CUDA IPC handle: {exc}") from None
        self._add(_Region(CudaRegionStatus(name, device_id, byte_size), None, None, device))

    def cuda_status(self, name: str = "") -> list[CudaRegionStatus]:
        """Every CUDA region, or the one called `name` (NOT_FOUND when unknown)."""
        found = self._status(name, cuda=True, kind="cuda")
        return [s for s in found if isinstance(s, CudaRegionStatus)]

    def unregister_cuda(self, name: str = "") -> None:
        """Drop one CUDA region, or every one when `name` is empty; unknown names are fine."""
        self._unregister(name, cuda=True)

    # --- tensor data ---------------------------------------------------------------------
    def for_request(self) -> RequestRegions:
        """A reader for one request's inputs that holds their regions until the request ends."""
        return RequestRegions(self)

    def read(self, ref: SharedMemoryRef) -> memoryview:
        """A read-only view of the `ref.byte_size` bytes an input points at (bounds-checked);
        a CUDA region's bytes are copied to the host first."""
        region = self._checked(ref)
        if region.device is not None:
            return memoryview(region.device.read(ref.offset, ref.byte_size)).toreadonly()
        return self._slice(ref).toreadonly()

    def use(self, refs: Iterable[SharedMemoryRef]) -> RegionUse:
        """Bounds-check references; their regions are in use (an unregister waits) until released."""
        regions: list[_Region] = []
        try:
            with self._lock:
                for ref in refs:
                    region = self._checked(ref)
                    region.uses += 1
                    regions.append(region)
        except BaseException:
            self._release(regions)
            raise
        return RegionUse(self, regions)

    def _release(self, regions: list[_Region]) -> None:
        with self._lock:
            for region in regions:
                region.uses -= 1
                if region.uses == 0 and region.unregistered:
                    name = region.status.name
                    if self._regions.get(name) is region:
                        del self._regions[name]
                    region.close()

    def write(self, ref: SharedMemoryRef, data: bytes | memoryview, tensor: str) -> None:
        """Copy an output's bytes to where `ref` points; INVALID_ARG when they do not fit."""
        if len(data) > ref.byte_size:
            raise InvalidInput(
                f"shared memory size specified with the request for output '{tensor}' ({ref.byte_size} "
                f"bytes) should be at least {len(data)} bytes to hold the results"
            )
        region = self._checked(ref)
        if region.device is not None:
            region.device.write(ref.offset, data)
            return
        with self._slice(ref) as target:
            target[: len(data)] = data

    def _slice(self, ref: SharedMemoryRef) -> memoryview:
        view = self._checked(ref).view
        assert view is not None
        return view[ref.offset : ref.offset + ref.byte_size]

    def _checked(self, ref: SharedMemoryRef) -> _Region:
        """The region `ref` points into, once its offset and size are checked against it."""
        region = self._regions.get(ref.region)
        if region is None:
            raise InvalidInput(f"Unable to find shared memory region: '{ref.region}'")
        size = region.status.byte_size
        if ref.offset >= size:
            raise InvalidInput(
                f"Invalid offset for shared memory region: '{ref.region}' "
                f"(offset {ref.offset}, region size {size} bytes)"
            )
        if ref.offset + ref.byte_size > size:
            raise InvalidInput(
                f"Invalid offset + byte size for shared memory region: '{ref.region}' "
                f"(offset {ref.offset} + byte size {ref.byte_size} exceeds the region's {size} bytes)"
            )
        return region


class RequestRegions:
    """Reads one request's inputs from shared memory; each region read stays in use (an unregister
    waits, as in Triton) until `release()` at the end of the request, or until this is collected."""

    __slots__ = ("_registry", "_uses")

    def __init__(self, registry: SharedMemoryRegistry) -> None:
        self._registry = registry
        self._uses: list[RegionUse] = []

    def read(self, ref: SharedMemoryRef) -> memoryview:
        self._uses.append(self._registry.use([ref]))
        return self._registry.read(ref)

    def release(self) -> None:
        for use in self._uses:
            use.release()
        self._uses.clear()


# Where a codec reads shared-memory inputs from: the registry, or one request's reader.
RegionReader = SharedMemoryRegistry | RequestRegions

