"""Per-model-version statistics: Triton's statistics extension counters plus latency histograms.

Schedulers record into a ModelStats; the statistics endpoints and the Prometheus collector read it.
Recording is a handful of integer additions, cheap enough for every request; the histograms (the
Prometheus metrics beyond Triton's) can be switched off per ModelStats.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (nanoseconds, integers: the clocks' unit, so recording needs no conversion) of the
# latency histogram buckets, 50 µs to 10 s; +Inf is implicit.
LATENCY_BUCKETS_NS: tuple[int, ...] = tuple(
    us * 1000
    for us in (
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000,
        100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    )
)
BATCH_SIZE_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(slots=True)
class Duration:
    """A count and a total in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class Histogram:
    """Per-bucket counts (made cumulative when read) and a sum, for one observed integer quantity."""

    bounds: tuple[int, ...]
    counts: list[int] = field(default_factory=list)
    total: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: int) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(slots=True)
class BatchStats:
    """Executions of one batch size."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ExecutionTiming:
    """How long one batch execution spent gathering inputs, running, and scattering outputs."""

    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0

    @property
    def total_ns(self) -> int:
        return self.input_ns + self.infer_ns + self.output_ns


class ModelStats:
    """Counters for one model version, in Triton's statistics-extension shape."""

    def __init__(self, histograms: bool = True, response_cache: bool = False) -> None:
        self.histograms = histograms
        self.response_cache = response_cache  # the model's config enables it: nv_cache_*_per_model
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.cache_hit = Duration()
        self.cache_miss = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.batches: dict[int, BatchStats] = {}
        self.failures_by_reason: dict[str, int] = {"REJECTED": 0, "CANCELED": 0, "BACKEND": 0, "OTHER": 0}
        self.pending = 0
        self.request_latency = Histogram(LATENCY_BUCKETS_NS)
        self.queue_latency = Histogram(LATENCY_BUCKETS_NS)
        self.compute_latency = Histogram(LATENCY_BUCKETS_NS)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)

    def record_execution(self, batch_size: int, timing: ExecutionTiming) -> None:
        """One backend execution of `batch_size` rows (Triton stamps last_inference here, not per request)."""
        self.execution_count += 1
        self.last_inference_ms = max(self.last_inference_ms, time.time_ns() // 1_000_000)
        batch = self.batches.get(batch_size)
        if batch is None:
            batch = self.batches[batch_size] = BatchStats()
        batch.compute_input.add(timing.input_ns)
        batch.compute_infer.add(timing.infer_ns)
        batch.compute_output.add(timing.output_ns)
        if self.histograms:
            self.batch_size.observe(batch_size)
            self.compute_latency.observe(timing.total_ns)

    def record_success(
        self, batch_size: int, request_ns: int, queue_ns: int, timing: ExecutionTiming
    ) -> None:
        """One request that completed; compute times are its batch's."""
        self.success.add(request_ns)
        self.queue.add(queue_ns)
        self.compute_input.add(timing.input_ns)
        self.compute_infer.add(timing.infer_ns)
        self.compute_output.add(timing.output_ns)
        self.inference_count += batch_size
        if self.histograms:
            self.request_latency.observe(request_ns)
            self.queue_latency.observe(queue_ns)

    def record_cache_hit(self, request_ns: int, queue_ns: int, lookup_ns: int) -> None:
        """One request answered from the response cache: a success with no execution and no compute."""
        self.success.add(request_ns)
        self.queue.add(queue_ns)
        self.cache_hit.add(lookup_ns)
        if self.histograms:
            self.request_latency.observe(request_ns)
            self.queue_latency.observe(queue_ns)

    def record_cache_miss(self, miss_ns: int) -> None:
        """A success (already recorded) whose response went into the cache; `miss_ns` (lookup + insert)
        is part of its request time too."""
        self.success.ns += miss_ns
        self.cache_miss.add(miss_ns)

    def record_failure(self, request_ns: int, reason: str) -> None:
        """One request that failed after it was queued (timeout REJECTED, BACKEND, CANCELED, OTHER)."""
        self.fail.add(request_ns)
        self.failures_by_reason[reason] = self.failures_by_reason.get(reason, 0) + 1

    def to_json(self, name: str, version: str) -> dict[str, Any]:
        """This version's entry of Triton's `model_stats` array."""
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": self.cache_hit.to_json(),
                "cache_miss": self.cache_miss.to_json(),
            },
            "response_stats": {},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.to_json(),
                    "compute_infer": b.compute_infer.to_json(),
                    "compute_output": b.compute_output.to_json(),
                }
                for size, b in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }
