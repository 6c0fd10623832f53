"""/metrics of a real server after known traffic, read with prometheus_client's text parser.

The server listens for metrics on its own free loopback port. Requests are sent one at a time, so
every request is one execution and the expected counts are exact. A `slow` model keeps its only
instance busy so that a request with a 1 ms queue timeout expires (Triton's reason REJECTED).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tritonclient.utils import InferenceServerException

from support.models import SLOW_WIDTH, slow_model, small_models
from support.server import HOST, ServerProcess, free_port, running_server

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SLOW_ROWS = 60_000  # about a second of matmuls on one thread
MODELS = {("add_sub", "1"), ("slow", "1")}
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


SLOW_CONFIG = """
name: "slow"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]
instance_group [{ count: 1 kind: KIND_CPU }]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
dynamic_batching { default_queue_policy { allow_timeout_override: true } }
"""


def write_slow(repo: Path) -> None:
    (repo / "slow" / "1").mkdir(parents=True)
    weight = (np.random.default_rng(0).standard_normal((SLOW_WIDTH, SLOW_WIDTH)) / 16).astype(np.float32)
    (repo / "slow" / "1" / "model.onnx").write_bytes(slow_model(16, weight).SerializeToString())
    (repo / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    repo = tmp_path_factory.mktemp("metrics_repo")
    small_models.write_add_sub(repo)
    write_slow(repo)
    port = free_port()
    args = ["--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}"]
    with running_server(repo, tmp_path_factory.mktemp("logs") / "metrics_server.log", args) as proc:
        yield proc, f"http://{HOST}:{port}/metrics"


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with _OPENER.open(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, "", ""


def scrape(url: str) -> dict[str, list[Sample]]:
    status, _, text = fetch(url)
    assert status == 200
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def one(samples: list[Sample], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples)
    return found[0]


def add_sub_inputs(batch: int) -> list[httpclient.InferInput]:
    data = np.ones((batch, 16), np.float32)
    inputs = [httpclient.InferInput(name, [batch, 16], "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    return inputs


def slow_input(rows: int, module: Any = httpclient) -> list[Any]:
    tensor = module.InferInput("INPUT0", [1, rows], "FP32")
    tensor.set_data_from_numpy(np.ones((1, rows), np.float32))
    return [tensor]


def test_every_loaded_version_has_all_series_before_traffic(
    metrics_server: tuple[ServerProcess, str],
) -> None:
    _, url = metrics_server
    families = scrape(url)
    for name in (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
    ):
        samples = families[name]
        assert {(s.labels["model"], s.labels["version"]) for s in samples} == MODELS, name
        assert all(set(s.labels) == {"model", "version"} for s in samples), name
    failures = families["nv_inference_request_failure"]
    assert {(s.labels["model"], s.labels["version"], s.labels["reason"]) for s in failures} == {
        (m, v, r) for m, v in MODELS for r in FAILURE_REASONS
    }
    for name in ("nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes"):
        assert len(families[name]) == 1
    assert 0.0 <= families["nv_cpu_utilization"][0].value <= 1.0
    assert 0 < families["nv_cpu_memory_used_bytes"][0].value < families["nv_cpu_memory_total_bytes"][0].value
    assert families["process_resident_memory_bytes"][0].value > 0


def test_counts_and_histograms_match_known_traffic(metrics_server: tuple[ServerProcess, str]) -> None:
    server, url = metrics_server
    sizes = [1, 2, 3, 1, 4, 8, 1]
    with httpclient.InferenceServerClient(server.url) as client:
        before = scrape(url)
        for size in sizes:
            client.infer("add_sub", add_sub_inputs(size))
        with pytest.raises(InferenceServerException):  # a validation error is not a failure
            client.infer("add_sub", add_sub_inputs(9))
        families = scrape(url)
        stats = client.get_inference_statistics("add_sub", "1")["model_stats"][0]
    labels = {"model": "add_sub", "version": "1"}

    def grew(name: str) -> float:
        return one(families[name], **labels) - one(before[name], **labels)

    assert grew("nv_inference_request_success") == len(sizes)
    assert grew("nv_inference_count") == sum(sizes)
    assert grew("nv_inference_exec_count") == len(sizes)  # one at a time: one execution each
    for reason in FAILURE_REASONS:
        assert one(families["nv_inference_request_failure"], reason=reason, **labels) == 0
    assert one(families["nv_inference_pending_request_count"], **labels) == 0
    # The cumulative µs counters are the statistics extension's ns totals, truncated to µs.
    inference = stats["inference_stats"]
    for metric, key in (
        ("nv_inference_request_duration_us", "success"),
        ("nv_inference_queue_duration_us", "queue"),
        ("nv_inference_compute_input_duration_us", "compute_input"),
        ("nv_inference_compute_infer_duration_us", "compute_infer"),
        ("nv_inference_compute_output_duration_us", "compute_output"),
    ):
        assert one(families[metric], **labels) == inference[key]["ns"] // 1000, metric
    assert one(families["nv_inference_request_duration_us"], **labels) > 0

    request = [s for s in families["modelport_request_duration_seconds"] if s.labels["model"] == "add_sub"]
    assert one([s for s in request if s.name.endswith("_count")]) == len(sizes)
    assert one([s for s in request if s.name.endswith("_bucket")], le="+Inf") == len(sizes)
    assert one([s for s in request if s.name.endswith("_sum")]) == pytest.approx(
        inference["success"]["ns"] / 1e9, rel=1e-6
    )
    queue = [s for s in families["modelport_queue_duration_seconds"] if s.labels["model"] == "add_sub"]
    assert one([s for s in queue if s.name.endswith("_count")]) == len(sizes)
    compute = [s for s in families["modelport_compute_duration_seconds"] if s.labels["model"] == "add_sub"]
    assert one([s for s in compute if s.name.endswith("_count")]) == len(sizes)
    batch = [s for s in families["modelport_batch_size"] if s.labels["model"] == "add_sub"]
    buckets = {s.labels["le"]: s.value for s in batch if s.name.endswith("_bucket")}
    assert buckets["1.0"] == 3 and buckets["2.0"] == 4 and buckets["4.0"] == 6 and buckets["8.0"] == 7
    assert buckets["+Inf"] == 7
    assert one([s for s in batch if s.name.endswith("_sum")]) == sum(sizes)
    assert {frozenset(s.labels) for s in batch if s.name.endswith("_bucket")} == {
        frozenset({"model", "version", "le"})
    }


def test_queue_timeout_counts_as_rejected(metrics_server: tuple[ServerProcess, str]) -> None:
    server, url = metrics_server
    labels = {"model": "slow", "version": "1"}
    before = scrape(url)
    asyncio.run(_block_then_time_out(server))
    families = scrape(url)
    with httpclient.InferenceServerClient(server.url) as client:
        stats = client.get_inference_statistics("slow", "1")["model_stats"][0]
    failures = families["nv_inference_request_failure"]
    rejected_before = one(before["nv_inference_request_failure"], reason="REJECTED", **labels)
    assert one(failures, reason="REJECTED", **labels) - rejected_before == 1
    assert one(failures, reason="BACKEND", **labels) == 0
    success_before = one(before["nv_inference_request_success"], **labels)
    assert one(families["nv_inference_request_success"], **labels) - success_before == 1
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["inference_stats"]["success"]["count"] == 1


async def _block_then_time_out(server: ServerProcess) -> None:
    """Keep the slow model's only instance busy, then queue a request allowed to wait 1 ms."""
    async with aiohttpclient.InferenceServerClient(server.url, conn_timeout=60) as client:
        blocker = asyncio.create_task(client.infer("slow", slow_input(SLOW_ROWS, aiohttpclient)))
        await asyncio.sleep(0.3)  # the blocker arrives and runs for about a second
        with pytest.raises(InferenceServerException, match="timeout"):
            await client.infer("slow", slow_input(1, aiohttpclient), timeout=1000)
        await blocker


def test_endpoint_paths_and_content_type(metrics_server: tuple[ServerProcess, str]) -> None:
    _, url = metrics_server
    status, content_type, text = fetch(url)
    assert status == 200
    assert content_type.startswith("text/plain") and "charset=utf-8" in content_type
    assert "# TYPE nv_inference_request_success counter" in text
    assert fetch(url + "/")[0] == 200
    assert fetch(url.replace("/metrics", "/nothing"))[0] == 404


def test_metrics_config_and_allow_metrics_flags(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    small_models.write_add_sub(repo)
    port = free_port()
    args = [
        "--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}",
        "--metrics-config", "counter_latencies=false", "--metrics-config", "histograms=false",
        "--allow-cpu-metrics=false",
    ]
    with running_server(repo, tmp_path / "server.log", args):
        families = scrape(f"http://{HOST}:{port}/metrics")
    assert "nv_inference_request_success" in families
    assert "nv_inference_request_duration_us" not in families
    # histograms=false turns off the modelport_* histograms; the model state gauge is no histogram.
    left = [name for name in families if name.startswith("modelport_") or name.startswith("nv_cpu")]
    assert left == ["modelport_model_state"]

    port = free_port()
    off = ["--allow-metrics=false", f"--metrics-port={port}"]
    with running_server(repo, tmp_path / "off.log", off), pytest.raises(urllib.error.URLError):
        _OPENER.open(f"http://{HOST}:{port}/metrics", timeout=2)
