"""modelport's model residency metrics (`--load-on-demand`, `--model-memory-budget`), read at scrape
time: loads and evictions per model, the load-duration histogram, resident bytes per model, the
budget and, with `--model-memory-accounting=process`, the resident-memory baseline the budget counts
from and the learned factors (the process's own resident memory is prometheus_client's
process_resident_memory_bytes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, cast

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_go_float = cast(Callable[[float], str], floatToGoString)  # Go's float text, as Prometheus writes it


class ResidencyFigures(Protocol):
    """What the collector reads (repository.residency.Residency has it)."""

    budget: int | None
    bytes: dict[str, int]
    loads: dict[str, int]
    evictions: dict[str, int]
    load_seconds: list[int]  # per bucket of `bounds`, then above the last
    load_seconds_sum: float

    @property
    def baseline(self) -> int | None:
        """Process accounting: the RSS the budget is counted from (None in files mode)."""

    @property
    def factors(self) -> dict[str, float]:
        """Process accounting: the learned RSS per byte of model files, per backend."""


class ResidencyCollector(Collector):
    """Model loads, evictions, load durations and resident bytes."""

    def __init__(self, residency: ResidencyFigures, bounds: Sequence[float]) -> None:
        self._residency = residency
        self._bounds = tuple(bounds)

    def collect(self) -> Iterator[Metric]:
        figures = self._residency
        yield _per_model_counter("modelport_model_loads", "Model loads (startup, API and on demand)",
                                 figures.loads)  # fmt: skip
        yield _per_model_counter(
            "modelport_model_evictions",
            "Models unloaded to make room in the memory budget",
            figures.evictions,
        )
        histogram = HistogramMetricFamily("modelport_model_load_duration_seconds", "Model load duration")
        histogram.add_metric([], self._buckets(figures.load_seconds), figures.load_seconds_sum)
        yield histogram
        resident = GaugeMetricFamily(
            "modelport_model_resident_bytes",
            "Memory counted for a loaded or loading model (its folder size; with process accounting, "
            "times its backend's learned factor)",
            labels=("model",),
        )
        for model, size in sorted(figures.bytes.items()):
            resident.add_metric([model], size)
        yield resident
        if figures.budget is not None:
            yield GaugeMetricFamily("modelport_model_memory_budget_bytes",
                                    "--model-memory-budget in bytes", value=figures.budget)  # fmt: skip
        if figures.baseline is not None:
            yield GaugeMetricFamily(
                "modelport_process_memory_baseline_bytes",
                "Process accounting: resident memory before the first model; the budget bounds RSS above it",
                value=figures.baseline,
            )
            factor = GaugeMetricFamily(
                "modelport_model_memory_factor",
                "Process accounting: resident bytes a load added per byte of model files, per backend",
                labels=("backend",),
            )
            for backend, learned in sorted(figures.factors.items()):
                factor.add_metric([backend], learned)
            yield factor

    def _buckets(self, counts: Sequence[int]) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, hits in zip(self._bounds, counts[:-1], strict=True):
            running += hits
            buckets.append((_go_float(bound), running))
        buckets.append(("+Inf", running + counts[-1]))
        return buckets


def _per_model_counter(name: str, documentation: str, counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=("model",))
    for model, count in sorted(counts.items()):
        family.add_metric([model], count)
    return family
