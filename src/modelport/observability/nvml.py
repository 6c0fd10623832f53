"""The one place NVML is called (through nvidia-ml-py): which GPUs this process sees, and their readings.

`GpuReader` is the interface (devices, readings); `NvmlReader` reads the driver, `FakeGpuReader`
serves fixed figures for tests. Without nvidia-ml-py or a driver there are simply no GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU as this process numbers it (CUDA's index after CUDA_VISIBLE_DEVICES)."""

    index: int
    uuid: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class GpuReading:
    """Triton's GPU gauges for one device, in its units (W, J, bytes, 0..1)."""

    uuid: str
    utilization: float
    memory_total_bytes: int
    memory_used_bytes: int
    power_usage_w: float
    power_limit_w: float
    energy_j: float


class GpuReader(Protocol):
    """What the server needs from the GPU driver."""

    def devices(self) -> tuple[GpuDevice, ...]:
        """The GPUs this process may use, by CUDA index."""
        ...

    def read(self) -> tuple[GpuReading, ...]:
        """A reading of every device in `devices()` (a device that cannot be read is left out)."""
        ...


@dataclass(slots=True)
class FakeGpuReader:
    """Fixed devices and readings (tests); `reads` counts the calls to read()."""

    gpus: tuple[GpuDevice, ...] = ()
    readings: list[GpuReading] = field(default_factory=list)
    reads: int = 0

    def devices(self) -> tuple[GpuDevice, ...]:
        return self.gpus

    def read(self) -> tuple[GpuReading, ...]:
        self.reads += 1
        return tuple(self.readings)


def visible_devices(all_devices: Sequence[GpuDevice], cuda_visible: str | None) -> tuple[GpuDevice, ...]:
    """The devices CUDA shows this process, renumbered 0.. as CUDA does, per CUDA_VISIBLE_DEVICES
    (indices or UUID prefixes; an entry that names no device ends the list, as in CUDA)."""
    if cuda_visible is None:
        return tuple(all_devices)
    shown: list[GpuDevice] = []
    for entry in (e.strip() for e in cuda_visible.split(",")):
        found = _device_named(all_devices, entry)
        if found is None or any(d.uuid == found.uuid for d in shown):
            break
        shown.append(GpuDevice(len(shown), found.uuid, found.name))
    return tuple(shown)


def _device_named(devices: Sequence[GpuDevice], entry: str) -> GpuDevice | None:
    if entry.isdigit():
        return next((d for d in devices if d.index == int(entry)), None)
    if entry.startswith("GPU-") or entry.startswith("MIG-"):
        return next((d for d in devices if d.uuid.startswith(entry)), None)
    return None


class NvmlReader:
    """Reads the NVIDIA driver through NVML; `open()` gives None where there is no NVML."""

    def __init__(self, nvml: Any, handles: dict[str, Any], devices: tuple[GpuDevice, ...]) -> None:
        self._nvml = nvml
        self._handles = handles  # by uuid
        self._devices = devices

    @classmethod
    def open(cls) -> NvmlReader | None:
        """Initialise NVML and list the visible GPUs; None without nvidia-ml-py, a driver or a GPU."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            found = [
                GpuDevice(i, _text(pynvml.nvmlDeviceGetUUID(h)), _text(pynvml.nvmlDeviceGetName(h)))
                for i, h in enumerate(handles)
            ]
        except pynvml.NVMLError as exc:
            log.debug("no GPUs through NVML: %s", exc)
            return None
        devices = visible_devices(found, os.environ.get("CUDA_VISIBLE_DEVICES"))
        by_uuid = {d.uuid: h for d, h in zip(found, handles, strict=True)}
        return cls(pynvml, {d.uuid: by_uuid[d.uuid] for d in devices}, devices)

    def devices(self) -> tuple[GpuDevice, ...]:
        return self._devices

    def read(self) -> tuple[GpuReading, ...]:
        readings: list[GpuReading] = []
        for device in self._devices:
            try:
                readings.append(self._read(device.uuid, self._handles[device.uuid]))
            except self._nvml.NVMLError as exc:
                log.debug("GPU %s could not be read: %s", device.uuid, exc)
        return tuple(readings)

    def _read(self, uuid: str, handle: Any) -> GpuReading:
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuReading(
            uuid=uuid,
            utilization=nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            power_usage_w=nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # NVML speaks mW and mJ
            power_limit_w=nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            energy_j=nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
        )

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
