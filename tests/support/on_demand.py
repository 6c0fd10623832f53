"""Repositories of many small ONNX models for the on-demand tests, and a reader of the residency metrics.

Model `k` adds k to its input (OUTPUT0 = INPUT0 + k), so an answer shows which model gave it; every
model of one width has the same folder size, which is what the server counts against its budget.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from support.models import finish, write_model

WIDTH = 256  # elements per row: the weight makes each model file about 1 KiB
PIN = 'parameters { key: "modelport.pin" value: { string_value: "true" } }\n'
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def add_model_name(index: int) -> str:
    return f"add_{index:03d}"


def write_add_model(repo: Path, index: int, *, pinned: bool = False) -> Path:
    """<repo>/add_<index>: OUTPUT0 = INPUT0 + index (FP32, [-1, WIDTH], batching up to 8)."""
    name = add_model_name(index)
    weight = numpy_helper.from_array(np.full(WIDTH, index, dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "W"], ["OUTPUT0"])],
        name,
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", WIDTH])],
        initializer=[weight],
    )
    config = (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {WIDTH} ] }} ]\n'
        f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {WIDTH} ] }} ]\n'
        + ("" if not pinned else PIN)
        # Pinned or not, every config has the same length: the folders' sizes are equal.
        + ("" if pinned else "#" * (len(PIN) - 1) + "\n")
    )
    return write_model(repo, name, finish(graph), config)


def folder_size(folder: Path) -> int:
    """What the server counts for a model: the size of every file in its folder."""
    return sum(os.lstat(os.path.join(root, f)).st_size for root, _, files in os.walk(folder) for f in files)


@dataclass(frozen=True)
class Residency:
    """The residency figures of one scrape."""

    loads: dict[str, float]
    evictions: dict[str, float]
    resident: dict[str, float]
    process_rss: float
    load_seconds_count: float
    unavailable: frozenset[str]  # models modelport_model_state reports UNAVAILABLE (failed)
    baseline: float = 0.0  # modelport_process_memory_baseline_bytes (process accounting only)
    factors: dict[str, float] | None = None  # modelport_model_memory_factor{backend} (the same)

    @property
    def resident_total(self) -> float:
        return sum(self.resident.values())


def scrape(metrics_url: str) -> Residency:
    with _OPENER.open(metrics_url, timeout=10) as response:
        text = response.read().decode()
    per_model: dict[str, dict[str, float]] = {"loads": {}, "evictions": {}, "resident": {}}
    names = {
        "modelport_model_loads_total": "loads",
        "modelport_model_evictions_total": "evictions",
        "modelport_model_resident_bytes": "resident",
    }
    rss = 0.0
    load_count = 0.0
    baseline = 0.0
    factors: dict[str, float] = {}
    unavailable: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                per_model[names[sample.name]][sample.labels["model"]] = sample.value
            elif sample.name == "process_resident_memory_bytes":
                rss = sample.value
            elif sample.name == "modelport_model_memory_factor":
                factors[sample.labels["backend"]] = sample.value
            elif sample.name == "modelport_process_memory_baseline_bytes":
                baseline = sample.value
            elif sample.name == "modelport_model_load_duration_seconds_count":
                load_count = sample.value
            elif sample.name == "modelport_model_state" and _failed(sample.labels, sample.value):
                unavailable.add(sample.labels["model"])
    return Residency(
        per_model["loads"],
        per_model["evictions"],
        per_model["resident"],
        rss,
        load_count,
        frozenset(unavailable),
        baseline,
        factors,
    )


def _failed(labels: dict[str, str], value: float) -> bool:
    return labels.get("state") == "UNAVAILABLE" and value == 1
