"""The Prometheus collector and exposition: Triton's families from ModelStats, histograms, /proc gauges."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from modelport.observability.metrics import (
    CONTENT_TYPE,
    HostCpuCollector,
    MetricsApp,
    MetricsOptions,
    create_metrics_registry,
    render_exposition,
)
from modelport.observability.stats import LATENCY_BUCKETS_NS, ExecutionTiming, ModelStats

TRITON_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)
HISTOGRAMS = (
    "modelport_request_duration_seconds",
    "modelport_queue_duration_seconds",
    "modelport_compute_duration_seconds",
    "modelport_batch_size",
)


@dataclass
class FakeServed:
    name: str
    version: int
    stats: ModelStats = field(default_factory=ModelStats)


def run_batch(
    stats: ModelStats, sizes: list[int], request_us: int, queue_us: int, timing: ExecutionTiming
) -> None:
    """One execution of requests with these batch sizes, as the dynamic batcher records it."""
    stats.record_execution(sum(sizes), timing)
    for size in sizes:
        stats.record_success(size, request_us * 1000, queue_us * 1000, timing)


def parse(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def scrape(served: list[FakeServed], options: MetricsOptions | None = None, proc: str = "/proc") -> str:
    registry = create_metrics_registry(lambda: served, options, proc=proc)
    return render_exposition(registry).decode()


def value(samples: list[Sample], **labels: str) -> float:
    matches = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (labels, samples)
    return matches[0]


@pytest.fixture
def traffic() -> list[FakeServed]:
    a1, a2, b = FakeServed("alpha", 1), FakeServed("alpha", 2), FakeServed("beta", 3)
    timing = ExecutionTiming(input_ns=20_000, infer_ns=700_000, output_ns=30_000)  # 750 µs
    run_batch(a1.stats, [1, 2, 1], request_us=1_200, queue_us=300, timing=timing)  # 3 requests, 4 rows
    run_batch(a1.stats, [8], request_us=40, queue_us=10, timing=ExecutionTiming(infer_ns=30_000))
    a1.stats.record_failure(5_000_000, "REJECTED")
    a1.stats.record_failure(1_000, "BACKEND")
    a1.stats.pending = 3
    return [a1, a2, b]


def test_triton_families_have_exact_names_types_and_values(traffic: list[FakeServed]) -> None:
    text = scrape(traffic)
    for name in TRITON_COUNTERS:
        assert f"# TYPE {name} counter\n" in text  # no `_total`: Triton's names exactly
    assert "# TYPE nv_inference_pending_request_count gauge\n" in text
    assert 'nv_inference_request_success{model="alpha",version="1"} 4\n' in text
    assert 'nv_inference_request_failure{model="alpha",reason="REJECTED",version="1"} 1\n' in text
    families = parse(text)
    success = families["nv_inference_request_success"]
    assert value(success, model="alpha", version="1") == 4
    assert value(success, model="alpha", version="2") == 0
    assert value(families["nv_inference_count"], model="alpha", version="1") == 12
    assert value(families["nv_inference_exec_count"], model="alpha", version="1") == 2
    assert value(families["nv_inference_pending_request_count"], model="alpha", version="1") == 3
    failures = families["nv_inference_request_failure"]
    assert value(failures, model="alpha", version="1", reason="REJECTED") == 1
    assert value(failures, model="alpha", version="1", reason="BACKEND") == 1
    assert value(failures, model="alpha", version="1", reason="CANCELED") == 0
    assert value(failures, model="beta", version="3", reason="OTHER") == 0
    # cumulative µs: 3 x 1200 + 40; queue 3 x 300 + 10; compute per request = its batch's time
    assert value(families["nv_inference_request_duration_us"], model="alpha", version="1") == 3640
    assert value(families["nv_inference_queue_duration_us"], model="alpha", version="1") == 910
    assert value(families["nv_inference_compute_input_duration_us"], model="alpha", version="1") == 60
    assert value(families["nv_inference_compute_infer_duration_us"], model="alpha", version="1") == 2130
    assert value(families["nv_inference_compute_output_duration_us"], model="alpha", version="1") == 90


def test_every_version_has_the_same_label_sets_and_four_failure_reasons(traffic: list[FakeServed]) -> None:
    families = parse(scrape(traffic))
    versions = {("alpha", "1"), ("alpha", "2"), ("beta", "3")}
    for name in TRITON_COUNTERS:
        samples = families[name]
        if name == "nv_inference_request_failure":
            assert {(s.labels["model"], s.labels["version"], s.labels["reason"]) for s in samples} == {
                (m, v, r) for m, v in versions for r in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
            }
        else:
            assert {(s.labels["model"], s.labels["version"]) for s in samples} == versions
            assert all(set(s.labels) == {"model", "version"} for s in samples)


def test_histograms_bucket_totals_match_the_traffic(traffic: list[FakeServed]) -> None:
    families = parse(scrape(traffic))
    request = [s for s in families["modelport_request_duration_seconds"] if s.labels["version"] == "1"]
    buckets = {s.labels["le"]: s.value for s in request if s.name.endswith("_bucket")}
    assert len(buckets) == len(LATENCY_BUCKETS_NS) + 1
    assert buckets["+Inf"] == 4
    assert buckets["5e-05"] == 1  # the 40 µs request
    assert buckets["0.001"] == 1 and buckets["0.0025"] == 4  # three at 1.2 ms
    assert value([s for s in request if s.name.endswith("_count")]) == 4
    assert value([s for s in request if s.name.endswith("_sum")]) == pytest.approx(0.00364)
    batch = [s for s in families["modelport_batch_size"] if s.labels["version"] == "1"]
    batch_buckets = {s.labels["le"]: s.value for s in batch if s.name.endswith("_bucket")}
    assert batch_buckets["2.0"] == 0 and batch_buckets["4.0"] == 1 and batch_buckets["8.0"] == 2
    assert value([s for s in batch if s.name.endswith("_sum")]) == 12
    compute = [s for s in families["modelport_compute_duration_seconds"] if s.labels["version"] == "1"]
    assert value([s for s in compute if s.name.endswith("_count")]) == 2
    # buckets never decrease, and +Inf equals _count, for every series
    for name in HISTOGRAMS:
        for version in ("1", "2"):
            series = [
                s for s in families[name] if s.labels["version"] == version and s.labels["model"] == "alpha"
            ]
            counts = [s.value for s in series if s.name.endswith("_bucket")]
            assert counts == sorted(counts)
            assert counts[-1] == value([s for s in series if s.name.endswith("_count")])


def test_options_drop_latency_counters_histograms_and_cpu(traffic: list[FakeServed]) -> None:
    options = MetricsOptions(
        counter_latencies=False, histograms=False, cpu_metrics=False, process_metrics=False
    )
    families = parse(scrape(traffic, options))
    assert "nv_inference_request_duration_us" not in families
    assert not [name for name in families if name.startswith("modelport_")]
    assert "nv_cpu_utilization" not in families
    assert "nv_inference_request_success" in families


def test_no_models_gives_no_model_families() -> None:
    text = scrape([], MetricsOptions(process_metrics=False))
    families = parse(text)
    assert not [name for name in families if name.startswith(("nv_inference", "modelport_"))]
    assert "nv_cpu_utilization" in families


def test_histograms_off_in_stats_records_nothing_and_exports_no_series() -> None:
    served = FakeServed("m", 1, ModelStats(histograms=False))
    run_batch(served.stats, [1], 100, 10, ExecutionTiming(infer_ns=1000))
    assert served.stats.request_latency.count == 0
    families = parse(scrape([served], MetricsOptions(cpu_metrics=False, process_metrics=False)))
    assert "modelport_request_duration_seconds" not in families
    assert value(families["nv_inference_request_success"], model="m") == 1


def test_host_cpu_gauges_come_from_proc(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 1 1 1\n")
    (tmp_path / "meminfo").write_text("MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    400 kB\n")
    collector = HostCpuCollector(str(tmp_path))
    collector.prime()
    (tmp_path / "stat").write_text("cpu  250 0 150 900 0 0 0 0 0 0\n")  # +200 busy of +300 jiffies
    samples = {s.name: s.value for family in collector.collect() for s in family.samples}
    assert samples["nv_cpu_utilization"] == pytest.approx(2 / 3)
    assert samples["nv_cpu_memory_total_bytes"] == 1000 * 1024
    assert samples["nv_cpu_memory_used_bytes"] == 600 * 1024


def test_host_cpu_gauges_are_absent_without_proc(tmp_path: Path) -> None:
    assert list(HostCpuCollector(str(tmp_path / "missing")).collect()) == []


def test_label_values_are_escaped() -> None:
    text = scrape([FakeServed('we"ird\\name', 1)], MetricsOptions(cpu_metrics=False, process_metrics=False))
    assert 'model="we\\"ird\\\\name"' in text
    assert value(parse(text)["nv_inference_count"], model='we"ird\\name') == 0


def test_registries_are_independent() -> None:
    first = create_metrics_registry(lambda: [FakeServed("one", 1)], MetricsOptions(process_metrics=False))
    second = create_metrics_registry(lambda: [FakeServed("two", 1)], MetricsOptions(process_metrics=False))
    assert 'model="one"' in render_exposition(first).decode()
    assert 'model="one"' not in render_exposition(second).decode()


async def test_metrics_app_serves_get_metrics_only() -> None:
    registry = create_metrics_registry(lambda: [FakeServed("m", 1)], MetricsOptions(process_metrics=False))
    app = MetricsApp(registry)

    async def call(path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app({"type": "http", "path": path, "method": method}, None, send)
        headers = dict(sent[0]["headers"])  # type: ignore[call-overload]
        return int(sent[0]["status"]), headers, bytes(sent[1]["body"])  # type: ignore[call-overload]

    status, headers, body = await call("/metrics")
    assert status == 200 and headers[b"content-type"] == CONTENT_TYPE.encode()
    assert int(headers[b"content-length"]) == len(body)
    assert b'nv_inference_request_success{model="m",version="1"} 0' in body
    assert (await call("/metrics/"))[0] == 200
    assert (await call("/other"))[0] == 404
    assert (await call("/metrics", "POST"))[0] == 405


# --- the response cache ---------------------------------------------------------------------------

CACHE_PER_MODEL = (
    "nv_cache_num_hits_per_model",
    "nv_cache_hit_duration_per_model",
    "nv_cache_num_misses_per_model",
    "nv_cache_miss_duration_per_model",
)


def test_per_model_cache_counters_only_for_models_enabling_the_cache() -> None:
    cached = ModelStats(response_cache=True)
    cached.record_cache_hit(request_ns=9_000, queue_ns=1_000, lookup_ns=3_500)
    cached.record_cache_hit(request_ns=9_000, queue_ns=1_000, lookup_ns=3_500)
    cached.record_cache_miss(12_000)
    served = [FakeServed("cached", 1, cached), FakeServed("plain", 1, ModelStats())]
    text = render_exposition(create_metrics_registry(lambda: served, MetricsOptions(cpu_metrics=False)))
    families = parse(text.decode())
    values = {name: [(s.labels, s.value) for s in families[name]] for name in CACHE_PER_MODEL}
    labels = {"model": "cached", "version": "1"}
    assert values == {
        "nv_cache_num_hits_per_model": [(labels, 2)],
        "nv_cache_hit_duration_per_model": [(labels, 7)],
        "nv_cache_num_misses_per_model": [(labels, 1)],
        "nv_cache_miss_duration_per_model": [(labels, 12)],
    }
    assert "# TYPE nv_cache_num_hits_per_model counter" in text.decode()
    # A hit counts as a success but not as an inference.
    assert [s.value for s in families["nv_inference_request_success"] if s.labels == labels] == [2]
    assert [s.value for s in families["nv_inference_count"] if s.labels == labels] == [0]


def test_per_model_cache_counters_follow_counter_latencies() -> None:
    served = [FakeServed("cached", 1, ModelStats(response_cache=True))]
    options = MetricsOptions(cpu_metrics=False, counter_latencies=False)
    text = render_exposition(create_metrics_registry(lambda: served, options)).decode()
    assert "nv_cache_" not in text


@dataclass
class FakeCache:
    utilization: float = 0.25
    entry_count: int = 3
    lookups: int = 7
    hits: int = 4
    misses: int = 3
    evictions: int = 1
    lookup_ns: int = 5_999
    insertion_ns: int = 2_000


def test_server_wide_cache_gauges_only_with_a_cache() -> None:
    options = MetricsOptions(cpu_metrics=False)
    plain = render_exposition(create_metrics_registry(lambda: [], options)).decode()
    assert "nv_cache_" not in plain
    text = render_exposition(create_metrics_registry(lambda: [], options, cache=FakeCache())).decode()
    families = parse(text)
    values = {name: samples[0].value for name, samples in families.items() if name.startswith("nv_cache")}
    assert values == {
        "nv_cache_util": 0.25,
        "nv_cache_num_entries": 3,
        "nv_cache_num_hits": 4,
        "nv_cache_num_misses": 3,
        "nv_cache_num_lookups": 7,
        "nv_cache_num_evictions": 1,
        "nv_cache_lookup_duration": 5,
        "nv_cache_insertion_duration": 2,
    }
    assert "# TYPE nv_cache_util gauge" in text
    assert all(not samples[0].labels for name, samples in families.items() if name.startswith("nv_cache"))
