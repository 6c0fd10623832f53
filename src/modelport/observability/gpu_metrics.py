"""Triton's GPU gauges (nv_gpu_*, nv_energy_consumption) per `gpu_uuid`, read through a GpuReader.

Readings are taken at scrape time, at most once per `--metrics-interval-ms` (a scrape in between
sees the previous reading, as Triton's periodic refresh would). No reader: no families.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelport.clock import Clock
from modelport.observability.nvml import GpuReader, GpuReading

# (family, help, reading attribute) of the gauges
_GAUGES = (
    ("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", "utilization"),
    ("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", "memory_total_bytes"),
    ("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", "memory_used_bytes"),
    ("nv_gpu_power_usage", "GPU power usage in watts", "power_usage_w"),
    ("nv_gpu_power_limit", "GPU power management limit in watts", "power_limit_w"),
)


class GpuCollector(Collector):
    """The GPU families from `reader`, re-read when the last reading is `interval_s` old."""

    def __init__(self, reader: GpuReader, interval_s: float, clock: Clock) -> None:
        self._reader = reader
        self._interval_ns = int(interval_s * 1e9)
        self._clock = clock
        self._readings: tuple[GpuReading, ...] = ()
        self._read_at: int | None = None
        self._energy_at_start: dict[str, float] = {}  # NVML counts energy since the driver loaded

    def collect(self) -> Iterator[Metric]:
        readings = self.collect_readings()
        if not readings:
            return
        for name, documentation, attribute in _GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["gpu_uuid"])
            for reading in readings:
                family.add_metric([reading.uuid], float(getattr(reading, attribute)))
            yield family
        # A plain Metric: Triton's counter has no `_total` suffix (see metrics.render_exposition).
        energy = Metric("nv_energy_consumption", "GPU energy consumption in joules since the server started",
                        "counter")  # fmt: skip
        for reading in readings:
            since_start = reading.energy_j - self._energy_at_start.setdefault(reading.uuid, reading.energy_j)
            energy.add_sample("nv_energy_consumption", {"gpu_uuid": reading.uuid}, since_start)
        yield energy

    def prime(self) -> None:
        """Take the first reading now: energy counts from here (the server's start)."""
        self.collect_readings()
        for reading in self._readings:
            self._energy_at_start.setdefault(reading.uuid, reading.energy_j)

    def collect_readings(self) -> tuple[GpuReading, ...]:
        """The latest reading, taken now if the previous one is an interval old."""
        now = self._clock.now_ns()
        if self._read_at is None or now - self._read_at >= self._interval_ns:
            self._readings, self._read_at = self._reader.read(), now
        return self._readings
