"""Prometheus's own tools against modelport: promtool on the exposition and on the dashboard's
queries, and a real Prometheus server (Debian's package) scraping a real modelport on loopback.

promtool and prometheus come from Debian's `prometheus` package, which `make test-tools` installs
(as root, with apt-get); without them these tests skip and say so. Every process started here
listens on 127.0.0.1 only and is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from support.models import ROOT, small_models
from support.server import HOST, ServerProcess, free_port, running_server

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DASHBOARD_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = DASHBOARD_DIR / "modelport-dashboard.json"
# Lint findings promtool reports for Triton's own metric names, which modelport keeps on purpose.
TRITON_NAMING_FINDINGS = (
    'counter metrics should have "_total" suffix',
    "metric names should not contain abbreviated units",
    'non-histogram and non-summary metrics should not have "_count" suffix',
)
PROMTOOL_LINT_EXIT = 3  # promtool's exit code for lint findings (parse errors exit 1)
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s", "$model": ".*",
                     "$version": ".*"}


def _tool(name: str) -> str:
    """The path of a tool from Debian's `prometheus` package."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: `make test-tools` (as root) installs Debian's prometheus")
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    _tool("promtool")
    return _tool("prometheus")


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    repo = tmp_path_factory.mktemp("prom_repo")
    small_models.write_add_sub(repo)
    port = free_port()
    args = ["--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}"]
    with running_server(repo, tmp_path_factory.mktemp("logs") / "prom_server.log", args) as proc:
        yield proc, port


def _get(url: str, timeout: float = 5.0) -> bytes:
    with _OPENER.open(url, timeout=timeout) as response:
        return bytes(response.read())


def _infer(client: httpclient.InferenceServerClient, batch: int) -> None:
    data = np.ones((batch, 16), np.float32)
    inputs = [httpclient.InferInput(name, [batch, 16], "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    client.infer("add_sub", inputs)


# --- promtool check metrics ------------------------------------------------------------------------


def test_promtool_accepts_the_exposition(promtool: str, metrics_server: tuple[ServerProcess, int]) -> None:
    server, port = metrics_server
    with httpclient.InferenceServerClient(server.url) as client:
        for batch in (1, 4, 8):
            _infer(client, batch)
    exposition = _get(f"http://{HOST}:{port}/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode in (0, PROMTOOL_LINT_EXIT), output
    findings = [line for line in output.splitlines() if line.strip()]
    for line in findings:
        name, _, problem = line.partition(" ")
        assert name.startswith("nv_inference_"), f"unexpected promtool finding: {line}"
        assert problem in TRITON_NAMING_FINDINGS, f"unexpected promtool finding: {line}"
    # modelport's own families and the process/host gauges are lint-clean
    assert not [line for line in findings if line.startswith(("modelport_", "process_", "nv_cpu_"))]


def test_promtool_rejects_a_broken_exposition(promtool: str) -> None:
    broken = b"# TYPE x counter\nx{a=\"1\"} not-a-number\n"
    result = subprocess.run([promtool, "check", "metrics"], input=broken, capture_output=True, timeout=60)
    assert result.returncode not in (0, PROMTOOL_LINT_EXIT)  # so the test above can tell them apart


# --- the Grafana dashboard ----------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables replaced by concrete values) for every target."""
    queries = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unreplaced Grafana variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_dashboard_json_is_generated_from_its_source() -> None:
    script = DASHBOARD_DIR / "dashboard.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_dashboard_covers_throughput_latency_queue_batches_and_failures() -> None:
    doc = _dashboard()
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    text = " ".join(t["expr"] for p in panels for t in p["targets"])
    assert "rate(nv_inference_count" in text  # throughput
    assert "histogram_quantile(0.99, sum by (model, le) (rate(modelport_request_duration_seconds_bucket" in (
        text
    )
    assert "modelport_queue_duration_seconds_bucket" in text and "nv_inference_queue_duration_us" in text
    assert "modelport_batch_size_bucket" in text and "nv_inference_exec_count" in text
    assert "nv_inference_request_failure" in text
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert panel["gridPos"]["w"] <= 24
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "model", "version"}


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(_dashboard_queries())
    ]}]}
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_dashboard_queries())} rules found" in result.stdout


# --- a real Prometheus ------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_prometheus(binary: str, work: Path, target_port: int) -> Iterator[str]:
    """Prometheus on a free loopback port scraping 127.0.0.1:target_port every second."""
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: modelport\n    static_configs:\n"
        f"      - targets: ['{HOST}:{target_port}']\n",
        encoding="utf-8",
    )
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address={HOST}:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    try:
        _wait_for(lambda: _ready(url), 30, "Prometheus did not become ready", process, work)
        yield url
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        log.close()


def _ready(url: str) -> bool:
    try:
        return _get(f"{url}/-/ready", timeout=2).strip().endswith(b"Ready.")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _wait_for(check: Any, seconds: float, message: str, process: subprocess.Popen[bytes], work: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        result = check()
        if result:
            return result
        time.sleep(0.25)
    log = (work / "prometheus.log").read_text(errors="replace")
    raise AssertionError(f"{message}:\n{log[-2000:]}")


def query(url: str, expr: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    return body


def _series_value(url: str, expr: str) -> float | None:
    body = query(url, expr)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    number = float(result[0]["value"][1])
    return None if math.isnan(number) else number


def _targets(url: str) -> list[tuple[str, str]]:
    targets = json.loads(_get(f"{url}/api/v1/targets"))["data"]["activeTargets"]
    return [(t["scrapeUrl"], t["health"]) for t in targets]


def test_prometheus_scrapes_modelport_and_answers_histogram_quantile(
    prometheus_binary: str, metrics_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    server, port = metrics_server
    with running_prometheus(prometheus_binary, tmp_path, port) as prom:
        scrape_url = f"http://{HOST}:{port}/metrics"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _targets(prom) != [(scrape_url, "up")]:
            time.sleep(0.25)
        assert _targets(prom) == [(scrape_url, "up")]
        buckets = 'modelport_request_duration_seconds_bucket{model="add_sub"}'
        quantile = f"histogram_quantile(0.9, sum by (le) (rate({buckets}[30s])))"
        throughput = 'sum(rate(nv_inference_count{model="add_sub"}[30s]))'
        deadline = time.monotonic() + 60
        with httpclient.InferenceServerClient(server.url) as client:
            while time.monotonic() < deadline:
                for _ in range(20):
                    _infer(client, 2)
                p90 = _series_value(prom, quantile)
                rate = _series_value(prom, throughput)
                if p90 is not None and rate:
                    break
                time.sleep(0.5)
        assert p90 is not None, "Prometheus never answered the histogram_quantile query"
        assert 0 < p90 < 5.0  # seconds; add_sub takes well under a second
        assert rate is not None and rate > 0
        up = _series_value(prom, f'up{{instance="{HOST}:{port}"}}')
        assert up == 1
        # Every dashboard query runs against the live data without an error.
        for title, expr in _dashboard_queries():
            body = query(prom, expr)
            assert body["status"] == "success", (title, expr, body)
        throughput_panel = [e for t, e in _dashboard_queries() if t.startswith("Throughput")]
        assert query(prom, throughput_panel[0])["data"]["result"], "throughput panel has no data"
