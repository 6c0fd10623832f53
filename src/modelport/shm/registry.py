"""SharedMemoryRegistry: the POSIX shared-memory regions clients registered, mapped into this process.

Regions are opened with shm_open and mapped once at registration; inputs are read as views of the
mapping and outputs are written into it. CUDA regions are refused: this server has no CUDA IPC.

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
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelport.errors import (
    AlreadyExists,
    ErrorCode,
    InternalError,
    InvalidInput,
    ModelportError,
    Unsupported,
)
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


@dataclass(slots=True, eq=False)
class _Region:
    status: RegionStatus
    mapping: mmap.mmap
    view: memoryview = field(repr=False)  # exactly [offset, offset + byte_size) of the shm object
    uses: int = 0  # requests reading inputs from it or writing outputs to it
    unregistered: bool = False  # unregister was asked while in use: it goes when `uses` drops to 0

    def close(self) -> None:
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

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
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
        region = _Region(RegionStatus(name, key, offset, byte_size), mapping, view)
        with self._lock:
            if name in self._regions:
                region.close()
                raise AlreadyExists(f"shared memory region '{name}' already in manager")
            self._regions[name] = region

    def unregister_system(self, name: str = "") -> None:
        """Drop one region, or every region when `name` is empty; unknown names are fine.

        A region in use is dropped when its last request ends.
        """
        with self._lock:
            for region_name in [name] if name else list(self._regions):
                region = self._regions.get(region_name)
                if region is None:
                    continue
                if region.uses:
                    region.unregistered = True
                    log.debug("shared memory region '%s' goes when its requests end", region_name)
                else:
                    del self._regions[region_name]
                    region.close()

    def system_status(self, name: str = "") -> list[RegionStatus]:
        """Every region, or the one called `name` (NOT_FOUND when unknown)."""
        if not name:
            with self._lock:  # a request ending on another thread may drop a region meanwhile
                return [r.status for r in self._regions.values()]
        region = self._regions.get(name)
        if region is None:
            raise ModelportError(f"Unable to find system shared memory region: '{name}'", ErrorCode.NOT_FOUND)
        return [region.status]

    def close(self) -> None:
        self.unregister_system()

    # --- CUDA regions --------------------------------------------------------------------
    def register_cuda(self, name: str, device_id: int, byte_size: int) -> None:
        raise Unsupported(
            f"failed to register CUDA shared memory region '{name}': CUDA shared memory is not supported "
            f"on this server (no CUDA IPC); use system shared memory instead"
        )

    def cuda_status(self, name: str = "") -> list[RegionStatus]:
        """Always empty: no CUDA region can be registered here."""
        if not name:
            return []
        if name in self._regions:
            raise ModelportError(
                f"The region named '{name}' is registered as system shared memory, not CUDA shared memory",
                ErrorCode.NOT_FOUND,
            )
        raise ModelportError(f"Unable to find cuda shared memory region: '{name}'", ErrorCode.NOT_FOUND)

    def unregister_cuda(self, name: str = "") -> None:
        """Nothing to drop: no CUDA region can be registered here."""

    # --- tensor data ---------------------------------------------------------------------
    def for_request(self) -> RequestRegions:
        """A reader for one request's inputs that holds their regions until the request ends."""
        return RequestRegions(self)

    def read(self, ref: SharedMemoryRef) -> memoryview:
        """A read-only view of the `ref.byte_size` bytes an input points at (bounds-checked)."""
        return self._slice(ref).toreadonly()

    def use(self, refs: Iterable[SharedMemoryRef]) -> RegionUse:
        """Bounds-check references; their regions are in use (an unregister waits) until released."""
        regions: list[_Region] = []
        try:
            with self._lock:
                for ref in refs:
                    self._slice(ref).release()
                    region = self._regions[ref.region]
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
        with self._slice(ref) as target:
            target[: len(data)] = data

    def _slice(self, ref: SharedMemoryRef) -> memoryview:
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
        return region.view[ref.offset : ref.offset + ref.byte_size]


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

