"""FreeMemoryTrimmer: free heap memory is given back once it is large and has stopped changing."""

from __future__ import annotations

import sys
import threading

import pytest

from modelport.cli.allocator import FreeMemoryTrimmer

MiB = 1 << 20


class Heap:
    """Free bytes as a sequence of readings, and a count of trims."""

    def __init__(self, *readings_mib: int) -> None:
        self.readings = [r * MiB for r in readings_mib]
        self.trimmed = 0

    def free(self) -> int:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def trim(self) -> None:
        self.trimmed += 1


def run_checks(heap: Heap, checks: int) -> FreeMemoryTrimmer:
    trimmer = FreeMemoryTrimmer(heap.free, heap.trim, retain=64 * MiB, settle=1 * MiB)
    for _ in range(checks):
        trimmer.check()
    return trimmer


def test_a_settled_excess_is_trimmed_once() -> None:
    heap = Heap(10, 300, 300, 300, 300)  # a burst, then idle: the pages count as free after a trim too
    trimmer = run_checks(heap, 5)
    assert (heap.trimmed, trimmer.trims) == (1, 1)


def test_memory_that_keeps_moving_is_kept_for_reuse() -> None:
    heap = Heap(200, 260, 180, 300, 150, 240)  # steady traffic reusing its free memory
    run_checks(heap, 6)
    assert heap.trimmed == 0


def test_little_free_memory_is_kept() -> None:
    heap = Heap(40, 40, 40, 40)
    run_checks(heap, 4)
    assert heap.trimmed == 0


def test_a_new_burst_is_trimmed_again() -> None:
    heap = Heap(300, 300, 300, 500, 500, 500)
    run_checks(heap, 6)
    assert heap.trimmed == 2


def test_the_thread_checks_until_stopped() -> None:
    checked = threading.Event()

    def free() -> int:
        checked.set()
        return 0

    trimmer = FreeMemoryTrimmer(free, lambda: None, interval_s=0.01)
    trimmer.start()
    try:
        assert checked.wait(5)
    finally:
        trimmer.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_glibc_trimmer_reads_and_trims() -> None:
    import ctypes

    trimmer = FreeMemoryTrimmer.for_glibc(ctypes.CDLL("libc.so.6"))
    assert trimmer is not None
    trimmer.check()
    trimmer.check()  # a real heap: reading and (if over the bound) trimming do not fail
