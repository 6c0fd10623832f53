"""Which accelerators this machine has (none on a CPU-only host), as NVML reports them."""

from __future__ import annotations

import functools
import os

from modelport.observability.nvml import GpuDevice, NvmlReader


@functools.cache
def visible_gpus() -> tuple[GpuDevice, ...]:
    """The NVIDIA GPUs this process may use, by CUDA index; () without nvidia-ml-py, a driver or a GPU.

    Read once: the devices of a running server do not change.
    """
    reader = NvmlReader.open()
    if reader is None:
        return ()
    try:
        return reader.devices()
    finally:
        reader.close()


def visible_gpu_count() -> int:
    """Number of NVIDIA GPUs visible to this process; 0 when there is no driver or no GPU."""
    return len(visible_gpus())


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
