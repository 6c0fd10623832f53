#!/usr/bin/env python3
"""Builds the modelport Grafana dashboard (modelport-dashboard.json) from plain Python data.

Run `python deploy/grafana/dashboard.py` after changing a panel; `--check` exits 1 when the JSON
file is out of date. No Grafana library is needed: the dashboard model is plain JSON. Every query
uses Triton's metric names (so it also works against Triton) except the latency and batch-size
percentiles, which need modelport's histograms (`modelport_*`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("modelport-dashboard.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'model=~"$model",version=~"$version"'
RATE = "$__rate_interval"


def _rate(metric: str, by: str = "model") -> str:
    return f"sum by ({by}) (rate({metric}{{{SEL}}}[{RATE}]))"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (model, le) (rate({histogram}_bucket{{{SEL}}}[{RATE}])))"


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def _panel(
    panel_id: int,
    title: str,
    targets: list[tuple[str, str]],
    unit: str,
    grid: tuple[int, int, int, int],
    description: str = "",
    kind: str = "timeseries",
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def _row(panel_id: int, title: str, y: int) -> dict[str, Any]:
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def panels() -> list[dict[str, Any]]:
    inferences = _rate("nv_inference_count")
    executions = _rate("nv_inference_exec_count")
    successes = _rate("nv_inference_request_success")
    failures = _rate("nv_inference_request_failure")
    return [
        _row(1, "Traffic", 0),
        _panel(2, "Throughput (inferences/s)", [(inferences, "{{model}}")], "ops", (0, 1, 12, 8),
               "Rows inferred per second (a batch-8 request counts 8)."),
        _panel(3, "Requests/s: success and failure", [
            (successes, "{{model}} success"),
            (_rate("nv_inference_request_failure", "model, reason"), "{{model}} failed ({{reason}})"),
        ], "reqps", (12, 1, 12, 8)),
        _row(4, "Latency", 9),
        _panel(5, "Request latency percentiles", [
            (_quantile(0.5, "modelport_request_duration_seconds"), "{{model}} p50"),
            (_quantile(0.9, "modelport_request_duration_seconds"), "{{model}} p90"),
            (_quantile(0.99, "modelport_request_duration_seconds"), "{{model}} p99"),
        ], "s", (0, 10, 12, 8), "End-to-end time inside the server (modelport_request_duration_seconds)."),
        _panel(6, "Average request latency (Triton counters)", [
            (f"{_rate('nv_inference_request_duration_us')} / {successes} / 1e6", "{{model}}"),
        ], "s", (12, 10, 12, 8), "nv_inference_request_duration_us / nv_inference_request_success."),
        _panel(7, "Queue time", [
            (_quantile(0.5, "modelport_queue_duration_seconds"), "{{model}} p50"),
            (_quantile(0.99, "modelport_queue_duration_seconds"), "{{model}} p99"),
            (f"{_rate('nv_inference_queue_duration_us')} / {successes} / 1e6", "{{model}} average"),
        ], "s", (0, 18, 12, 8), "Time requests wait for a batch and a free instance."),
        _panel(8, "Compute time per execution", [
            (_quantile(0.5, "modelport_compute_duration_seconds"), "{{model}} p50"),
            (_quantile(0.99, "modelport_compute_duration_seconds"), "{{model}} p99"),
            (f"{_rate('nv_inference_compute_infer_duration_us')} / {successes} / 1e6",
             "{{model}} infer, average per request"),
        ], "s", (12, 18, 12, 8)),
        _row(9, "Batching and queue", 26),
        _panel(10, "Average batch size (rows per execution)", [
            (f"{inferences} / {executions}", "{{model}}"),
        ], "short", (0, 27, 8, 8)),
        _panel(11, "Batch size distribution", [
            (f'sum by (le) (rate(modelport_batch_size_bucket{{{SEL}}}[{RATE}]))', "{{le}}"),
        ], "short", (8, 27, 8, 8), "Executions per second by batch-size bucket (modelport_batch_size).",
            kind="bargauge"),
        _panel(12, "Pending requests", [
            (f"sum by (model) (nv_inference_pending_request_count{{{SEL}}})", "{{model}}"),
        ], "short", (16, 27, 8, 8), "Requests accepted but not yet executing."),
        _row(13, "Failures", 35),
        _panel(14, "Failures per model and reason", [
            (f"sum by (model, reason) (increase(nv_inference_request_failure{{{SEL}}}[{RATE}]))",
             "{{model}} {{reason}}"),
        ], "short", (0, 36, 12, 8)),
        _panel(15, "Failure ratio", [
            (f"{failures} / ({successes} + {failures})", "{{model}}"),
        ], "percentunit", (12, 36, 12, 8)),
        _row(16, "Host and process", 44),
        _panel(17, "CPU utilisation", [
            ("avg by (instance) (nv_cpu_utilization)", "host {{instance}}"),
            ("sum by (instance) (rate(process_cpu_seconds_total[$__rate_interval]))", "process {{instance}}"),
        ], "percentunit", (0, 45, 12, 8), "Host CPU (nv_cpu_utilization) and the server process, in cores."),
        _panel(18, "Memory", [
            ("sum by (instance) (nv_cpu_memory_used_bytes)", "host used {{instance}}"),
            ("sum by (instance) (nv_cpu_memory_total_bytes)", "host total {{instance}}"),
            ("sum by (instance) (process_resident_memory_bytes)", "process RSS {{instance}}"),
        ], "bytes", (12, 45, 12, 8)),
        # Empty on CPU-only servers: the nv_gpu_* families exist only where NVML finds a GPU.
        _row(19, "GPU", 53),
        _panel(20, "GPU utilisation", [
            ("avg by (gpu_uuid) (nv_gpu_utilization)", "{{gpu_uuid}}"),
        ], "percentunit", (0, 54, 8, 8), "Share of the last sample period a kernel ran (NVML), per GPU."),
        _panel(21, "GPU memory", [
            ("sum by (gpu_uuid) (nv_gpu_memory_used_bytes)", "used {{gpu_uuid}}"),
            ("sum by (gpu_uuid) (nv_gpu_memory_total_bytes)", "total {{gpu_uuid}}"),
        ], "bytes", (8, 54, 8, 8)),
        _panel(22, "GPU power", [
            ("sum by (gpu_uuid) (nv_gpu_power_usage)", "draw {{gpu_uuid}}"),
            ("sum by (gpu_uuid) (nv_gpu_power_limit)", "limit {{gpu_uuid}}"),
        ], "watt", (16, 54, 8, 8)),
    ]


def dashboard() -> dict[str, Any]:
    return {
        "uid": "modelport-overview",
        "title": "modelport",
        "description": "Throughput, latency percentiles, queue time, batch sizes and failures per model.",
        "tags": ["modelport", "triton", "inference"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            _variable("model", "Model", "label_values(nv_inference_request_success, model)"),
            _variable(
                "version", "Version", 'label_values(nv_inference_request_success{model=~"$model"}, version)'
            ),
        ]},
        "annotations": {"list": []},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the JSON file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
