"""Prometheus metrics: Triton's metric families read from ModelStats at scrape time, plus histograms.

Nothing is recorded here per request: the schedulers already keep ModelStats, and a scrape turns
them into metric families. Every family lives in the registry built by `create_metrics_registry`,
never in prometheus_client's global one. The text exposition is written by `render_exposition`
because prometheus_client would rename Triton's counters (it appends `_total`), and Triton's
dashboards and alerts query the names without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelport.clock import MonotonicClock
from modelport.observability.cache_metrics import (
    CacheFigures,
    ResponseCacheCollector,
    per_model_cache_counters,
)
from modelport.observability.gpu_metrics import GpuCollector
from modelport.observability.nvml import GpuReader
from modelport.observability.stats import Histogram, ModelStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_go_float = cast(Callable[[float], str], floatToGoString)  # Go's float text, as Prometheus writes it
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


class ServedVersion(Protocol):
    """What the collector needs from a loaded model version (core.model.ServedModel has it)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def stats(self) -> ModelStats: ...


ServedVersions = Callable[[], Sequence[ServedVersion]]


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """Which families a scrape produces (`--metrics-config`, `--allow-cpu-metrics`)."""

    counter_latencies: bool = True  # Triton's nv_inference_*_duration_us counters
    histograms: bool = True  # modelport_* latency and batch-size histograms
    cpu_metrics: bool = True  # nv_cpu_* from /proc
    gpu_metrics: bool = True  # nv_gpu_* and nv_energy_consumption through NVML (--allow-gpu-metrics)
    metrics_interval_s: float = 2.0  # how old a GPU reading may be (--metrics-interval-ms)
    process_metrics: bool = True  # process_* (prometheus_client's ProcessCollector)


# (name, help, attribute of ModelStats holding a Duration) for Triton's cumulative-µs counters.
_DURATION_COUNTERS = (
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds", "success"),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds", "queue"),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds",
        "compute_output",
    ),
)

# (name, help, attribute of ModelStats holding a Histogram, recorded units per exposed unit)
_HISTOGRAMS = (
    (
        "modelport_request_duration_seconds",
        "End-to-end time of successful requests inside the server, in seconds",
        "request_latency",
        1e9,
    ),
    (
        "modelport_queue_duration_seconds",
        "Time successful requests waited in the queue, in seconds",
        "queue_latency",
        1e9,
    ),
    (
        "modelport_compute_duration_seconds",
        "Time of one backend execution (input + infer + output), in seconds",
        "compute_latency",
        1e9,
    ),
    ("modelport_batch_size", "Rows (inferences) per backend execution", "batch_size", 1.0),
)


def _counter(name: str, documentation: str) -> Metric:
    return Metric(name, documentation, "counter")


class TritonModelCollector(Collector):
    """Per-model-version families with Triton's names and labels, plus modelport's histograms."""

    def __init__(self, served_versions: ServedVersions, options: MetricsOptions | None = None) -> None:
        self._served = served_versions
        self._options = options or MetricsOptions()

    def collect(self) -> Iterator[Metric]:
        versions = [(m.name, str(m.version), m.stats) for m in self._served()]
        success = _counter(
            "nv_inference_request_success", "Number of successful inference requests, all batch sizes"
        )
        failure = _counter(
            "nv_inference_request_failure", "Number of failed inference requests, all batch sizes"
        )
        count = _counter(
            "nv_inference_count", "Number of inferences performed (does not include cached requests)"
        )
        executions = _counter(
            "nv_inference_exec_count",
            "Number of model executions performed (does not include cached requests)",
        )
        pending = Metric(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model.",
            "gauge",
        )
        for model, version, stats in versions:
            labels = {"model": model, "version": version}
            success.add_sample(success.name, labels, stats.success.count)
            for reason in FAILURE_REASONS:
                failure.add_sample(
                    failure.name,
                    {"model": model, "reason": reason, "version": version},
                    stats.failures_by_reason.get(reason, 0),
                )
            count.add_sample(count.name, labels, stats.inference_count)
            executions.add_sample(executions.name, labels, stats.execution_count)
            pending.add_sample(pending.name, labels, max(stats.pending, 0))
        yield from (success, failure, count, executions, pending)
        if self._options.counter_latencies:
            yield from _duration_counters(versions)
            yield from per_model_cache_counters(versions)  # Triton has them among the latency counters
        if self._options.histograms:
            yield from _histograms(versions)


def _duration_counters(versions: list[tuple[str, str, ModelStats]]) -> Iterator[Metric]:
    for name, documentation, attribute in _DURATION_COUNTERS:
        family = _counter(name, documentation)
        for model, version, stats in versions:
            micros = getattr(stats, attribute).ns // 1000
            family.add_sample(name, {"model": model, "version": version}, micros)
        yield family


def _histograms(versions: list[tuple[str, str, ModelStats]]) -> Iterator[Metric]:
    for name, documentation, attribute, divisor in _HISTOGRAMS:
        family = HistogramMetricFamily(name, documentation, labels=("model", "version"))
        for model, version, stats in versions:
            if stats.histograms:
                histogram: Histogram = getattr(stats, attribute)
                family.add_metric(
                    [model, version], _cumulative_buckets(histogram, divisor), histogram.total / divisor
                )
        yield family


def _cumulative_buckets(histogram: Histogram, divisor: float) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, hits in zip(histogram.bounds, histogram.counts[:-1], strict=True):
        running += hits
        buckets.append((_go_float(bound / divisor), running))
    buckets.append(("+Inf", running + histogram.counts[-1]))
    return buckets


class HostCpuCollector(Collector):
    """Triton's host CPU gauges from /proc: utilisation since the previous scrape, and RAM."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies at the previous scrape

    def collect(self) -> Iterator[Metric]:
        times = _read_cpu_times(os.path.join(self._proc, "stat"))
        if times is not None:
            previous, self._last = self._last, times
            utilization = 0.0
            if previous is not None and times[1] > previous[1]:
                utilization = (times[0] - previous[0]) / (times[1] - previous[1])
            utilization = min(max(utilization, 0.0), 1.0)
            yield GaugeMetricFamily(
                "nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", value=utilization
            )
        memory = _read_meminfo(os.path.join(self._proc, "meminfo"))
        if memory is not None:
            total, available = memory
            yield GaugeMetricFamily(
                "nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", value=total
            )
            yield GaugeMetricFamily(
                "nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", value=total - available
            )

    def prime(self) -> None:
        """Take the first /proc/stat reading, so the first scrape reports a real utilisation."""
        self._last = _read_cpu_times(os.path.join(self._proc, "stat"))


def _read_cpu_times(path: str) -> tuple[int, int] | None:
    """(busy, total) jiffies of the `cpu` line; idle and iowait count as not busy."""
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


def _read_meminfo(path: str) -> tuple[int, int] | None:
    """(MemTotal, MemAvailable) in bytes."""
    found: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    found[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if "MemTotal" not in found or "MemAvailable" not in found:
        return None
    return found["MemTotal"], found["MemAvailable"]


def create_metrics_registry(
    served_versions: ServedVersions,
    options: MetricsOptions | None = None,
    proc: str = "/proc",
    cache: CacheFigures | None = None,
    gpus: GpuReader | None = None,
) -> CollectorRegistry:
    """A fresh registry holding modelport's collectors (never prometheus_client's global registry);
    `cache`: the server's response cache, when it has one; `gpus`: the GPU reader, where NVML is."""
    options = options or MetricsOptions()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TritonModelCollector(served_versions, options))
    if cache is not None:
        registry.register(ResponseCacheCollector(cache))
    if options.cpu_metrics:
        cpu = HostCpuCollector(proc)
        cpu.prime()
        registry.register(cpu)
    if options.gpu_metrics and gpus is not None:
        gpu = GpuCollector(gpus, options.metrics_interval_s, MonotonicClock())
        gpu.prime()
        registry.register(gpu)
    if options.process_metrics and os.path.isdir(os.path.join(proc, "self")):
        ProcessCollector(registry=registry, proc=proc)
    return registry


# --- text exposition (format 0.0.4) -------------------------------------------------------------


def render_exposition(registry: CollectorRegistry) -> bytes:
    """The registry as Prometheus text, with counters named exactly as their samples (Triton's way)."""
    lines: list[str] = []
    for family in registry.collect():
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        if not samples:  # e.g. no model loaded yet: nothing to say about this family
            continue
        name = _family_name(family, samples)
        kind = family.type if family.type in ("counter", "gauge", "histogram", "summary") else "untyped"
        lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
        lines.append(f"# TYPE {name} {kind}")
        for sample in samples:
            lines.append(f"{sample.name}{_labels(sample.labels)} {_value(sample.value)}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _family_name(family: Metric, samples: list[Any]) -> str:
    # prometheus_client strips `_total` from counter family names; put it back when the samples have it.
    if family.type == "counter" and samples and samples[0].name == family.name + "_total":
        return family.name + "_total"
    return family.name


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return _go_float(value)


# --- the :8002 endpoint ---------------------------------------------------------------------------


class MetricsApp:
    """A minimal ASGI app: `GET /metrics` (or `/metrics/`) answers the registry's exposition.

    It runs on the server's event loop, so a scrape reads ModelStats between two requests' updates
    and never sees a half-recorded request.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/metrics", "/metrics/"):
            await _respond(send, 404, b"not found\n", "text/plain; charset=utf-8")
            return
        if scope["method"] != "GET":
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            return
        await _respond(send, 200, render_exposition(self._registry), CONTENT_TYPE)


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
