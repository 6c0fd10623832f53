"""Triton's GPU metric families from an injected GPU reader: names, labels, units, refresh interval."""

from __future__ import annotations

import dataclasses

from modelport.clock import FakeClock
from modelport.observability.gpu_metrics import GpuCollector
from modelport.observability.metrics import MetricsOptions, create_metrics_registry, render_exposition
from modelport.observability.nvml import FakeGpuReader, GpuDevice, GpuReading, NvmlReader

A = GpuReading("GPU-aaaa", 0.25, 80 * 2**30, 2**30, 150.5, 700.0, 1000.0)
B = GpuReading("GPU-bbbb", 0.0, 80 * 2**30, 0, 60.0, 700.0, 50.0)


def _reader() -> FakeGpuReader:
    return FakeGpuReader(gpus=(GpuDevice(0, "GPU-aaaa"), GpuDevice(1, "GPU-bbbb")), readings=[A, B])


def _text(reader: FakeGpuReader, **options: object) -> str:
    no_host = MetricsOptions(cpu_metrics=False, process_metrics=False, **options)  # type: ignore[arg-type]
    return render_exposition(create_metrics_registry(list, no_host, gpus=reader)).decode()


def test_the_families_are_triton_s_with_the_gpu_uuid_label() -> None:
    reader = _reader()
    text = _text(reader)
    for line in (
        "# TYPE nv_gpu_utilization gauge",
        'nv_gpu_utilization{gpu_uuid="GPU-aaaa"} 0.25',
        'nv_gpu_memory_total_bytes{gpu_uuid="GPU-bbbb"} 85899345920',
        'nv_gpu_memory_used_bytes{gpu_uuid="GPU-aaaa"} 1073741824',
        'nv_gpu_power_usage{gpu_uuid="GPU-aaaa"} 150.5',
        'nv_gpu_power_limit{gpu_uuid="GPU-bbbb"} 700',
        "# TYPE nv_energy_consumption counter",
        'nv_energy_consumption{gpu_uuid="GPU-aaaa"} 0',  # joules since the server started
    ):
        assert line in text.splitlines(), (line, text)


def test_energy_counts_from_the_server_start() -> None:
    reader = _reader()
    clock = FakeClock()
    collector = GpuCollector(reader, interval_s=2.0, clock=clock)
    collector.prime()
    reader.readings = [dataclasses.replace(A, energy_j=1300.0), B]
    clock.advance(2_000_000_000)
    energy = {s.labels["gpu_uuid"]: s.value for m in collector.collect() for s in m.samples
              if s.name == "nv_energy_consumption"}  # fmt: skip
    assert energy == {"GPU-aaaa": 300.0, "GPU-bbbb": 0.0}


def test_readings_are_taken_at_most_once_per_interval() -> None:
    reader = _reader()
    clock = FakeClock()
    collector = GpuCollector(reader, interval_s=2.0, clock=clock)
    list(collector.collect())
    clock.advance(1_999_000_000)
    list(collector.collect())
    assert reader.reads == 1
    clock.advance(1_000_000)
    list(collector.collect())
    assert reader.reads == 2


def test_no_gpu_no_families_and_no_error() -> None:
    assert "nv_gpu" not in _text(FakeGpuReader())
    assert "nv_gpu" not in _text(_reader(), gpu_metrics=False)  # --allow-gpu-metrics=false


def test_the_nvml_reader_finds_nothing_without_a_driver_or_reads_every_gpu() -> None:
    """On this machine: NVML either is absent (None, no error) or reads each visible GPU."""
    reader = NvmlReader.open()
    if reader is None:
        return
    try:
        assert [r.uuid for r in reader.read()] == [d.uuid for d in reader.devices()]
    finally:
        reader.close()
