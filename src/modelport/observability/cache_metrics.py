"""Triton's response cache metrics, read at scrape time: per model version, the nv_cache_*_per_model
counters (for models whose config enables the cache, beside the *_duration_us counters), and for
the local cache as a whole, its nv_cache_* gauges (when the server has a cache)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelport.observability.stats import ModelStats

# (name, help, attribute of ModelStats holding a Duration, read its count or its µs)
_PER_MODEL = (
    ("nv_cache_num_hits_per_model", "Number of cache hits per model", "cache_hit", "count"),
    ("nv_cache_hit_duration_per_model", "Total cache hit duration per model, in microseconds", "cache_hit",
     "us"),
    ("nv_cache_num_misses_per_model", "Number of cache misses per model", "cache_miss", "count"),
    ("nv_cache_miss_duration_per_model",
     "Total cache miss (insert+lookup) duration per model, in microseconds", "cache_miss", "us"),
)  # fmt: skip


class CacheFigures(Protocol):
    """What the gauges read from the server's cache (scheduling.response_cache.ResponseCache)."""

    @property
    def utilization(self) -> float: ...
    @property
    def entry_count(self) -> int: ...
    @property
    def lookups(self) -> int: ...

    hits: int
    misses: int
    evictions: int
    lookup_ns: int
    insertion_ns: int


def per_model_cache_counters(versions: Sequence[tuple[str, str, ModelStats]]) -> Iterator[Metric]:
    """The four per-model counters, with a series for each version whose config enables the cache."""
    cached = [v for v in versions if v[2].response_cache]
    if not cached:
        return
    for name, documentation, attribute, unit in _PER_MODEL:
        family = Metric(name, documentation, "counter")
        for model, version, stats in cached:
            duration = getattr(stats, attribute)
            value = duration.count if unit == "count" else duration.ns // 1000
            family.add_sample(name, {"model": model, "version": version}, value)
        yield family


class ResponseCacheCollector(Collector):
    """The local cache's gauges (Triton's local cache reports them without labels)."""

    def __init__(self, cache: CacheFigures) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self._cache
        figures = (
            ("nv_cache_util", "Cache utilization [0.0 - 1.0]", cache.utilization),
            ("nv_cache_num_entries", "Number of responses stored in response cache", cache.entry_count),
            ("nv_cache_num_hits", "Number of cache hits in response cache", cache.hits),
            ("nv_cache_num_misses", "Number of cache misses in response cache", cache.misses),
            ("nv_cache_num_lookups", "Number of cache lookups in response cache", cache.lookups),
            ("nv_cache_num_evictions", "Number of cache evictions in response cache", cache.evictions),
            ("nv_cache_lookup_duration", "Total cache lookup duration (hit and miss), in microseconds",
             cache.lookup_ns // 1000),
            ("nv_cache_insertion_duration", "Total cache insertion duration, in microseconds",
             cache.insertion_ns // 1000),
        )  # fmt: skip
        for name, documentation, value in figures:
            yield GaugeMetricFamily(name, documentation, value=value)
