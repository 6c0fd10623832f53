"""The statistics extension against known traffic: Triton's JSON shape, exactly, over HTTP and gRPC.

perf_analyzer reads these documents: every key must be present, every number an integer, and the
three compute counts equal. Requests are sent one at a time, so every request is one execution.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from support.models import small_models
from support.server import ServerProcess, running_server

MODEL_KEYS = {
    "name", "version", "last_inference", "inference_count", "execution_count", "inference_stats",
    "response_stats", "batch_stats", "memory_usage",
}
INFERENCE_KEYS = {"success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
                  "cache_miss"}
BATCH_KEYS = {"batch_size", "compute_input", "compute_infer", "compute_output"}


@pytest.fixture(scope="module")
def stats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    repo = tmp_path_factory.mktemp("stats_repo")
    small_models.write_add_sub(repo)
    small_models.write_add_versions(repo)
    small_models.write_string_identity(repo)
    with running_server(repo, tmp_path_factory.mktemp("logs") / "stats_server.log", grpc=True) as proc:
        yield proc, proc.grpc_url


def add_sub_inputs(batch: int, module: Any = httpclient) -> list[Any]:
    data = np.ones((batch, 16), np.float32)
    inputs = [module.InferInput(name, [batch, 16], "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    return inputs


def assert_triton_shape(entry: dict[str, Any]) -> None:
    assert set(entry) == MODEL_KEYS
    assert isinstance(entry["name"], str) and isinstance(entry["version"], str)
    for key in ("last_inference", "inference_count", "execution_count"):
        assert type(entry[key]) is int, key
    assert set(entry["inference_stats"]) == INFERENCE_KEYS
    for key, duration in entry["inference_stats"].items():
        assert set(duration) == {"count", "ns"}, key
        assert type(duration["count"]) is int and type(duration["ns"]) is int, key
    assert entry["response_stats"] == {}
    assert entry["memory_usage"] == []
    for batch in entry["batch_stats"]:
        assert set(batch) == BATCH_KEYS
        assert type(batch["batch_size"]) is int
        for key in ("compute_input", "compute_infer", "compute_output"):
            assert set(batch[key]) == {"count", "ns"}
    inference = entry["inference_stats"]
    computes = {inference[k]["count"] for k in ("compute_input", "compute_infer", "compute_output")}
    assert len(computes) == 1, "perf_analyzer needs the three compute counts equal"
    assert inference["queue"]["count"] == inference["success"]["count"]
    assert computes == {inference["success"]["count"] - inference["cache_hit"]["count"]}


def test_statistics_match_known_traffic(stats_server: tuple[ServerProcess, str]) -> None:
    server, _ = stats_server
    sizes = [1, 3, 1, 2, 8, 1]
    with httpclient.InferenceServerClient(server.url) as client:
        before = client.get_inference_statistics("add_sub")["model_stats"][0]
        assert before["last_inference"] == 0 and before["execution_count"] == 0
        started_ms = time.time_ns() // 1_000_000
        for size in sizes:
            client.infer("add_sub", add_sub_inputs(size))
        ended_ms = time.time_ns() // 1_000_000
        with pytest.raises(InferenceServerException, match="batch-size must be <= 8"):
            client.infer("add_sub", add_sub_inputs(9))  # validation errors are not failures
        entry = client.get_inference_statistics("add_sub", "1")["model_stats"][0]
    assert_triton_shape(entry)
    assert (entry["name"], entry["version"]) == ("add_sub", "1")
    assert entry["inference_count"] == sum(sizes)
    assert entry["execution_count"] == len(sizes)
    inference = entry["inference_stats"]
    assert inference["success"]["count"] == len(sizes)
    assert inference["fail"] == {"count": 0, "ns": 0}
    assert inference["cache_hit"] == {"count": 0, "ns": 0}
    assert inference["success"]["ns"] >= inference["queue"]["ns"] + inference["compute_infer"]["ns"] > 0
    assert started_ms <= entry["last_inference"] <= ended_ms
    by_size = {b["batch_size"]: b for b in entry["batch_stats"]}
    assert [b["batch_size"] for b in entry["batch_stats"]] == sorted(by_size)
    assert {size: b["compute_infer"]["count"] for size, b in by_size.items()} == {1: 3, 2: 1, 3: 1, 8: 1}
    for batch in by_size.values():
        counts = {batch[key]["count"] for key in ("compute_input", "compute_infer", "compute_output")}
        assert len(counts) == 1
    # one request per execution: per-request compute totals equal the per-batch-size totals
    for key in ("compute_input", "compute_infer", "compute_output"):
        assert inference[key]["ns"] == sum(b[key]["ns"] for b in by_size.values())


def test_all_models_are_listed_sorted_by_name_then_version(stats_server: tuple[ServerProcess, str]) -> None:
    server, _ = stats_server
    with httpclient.InferenceServerClient(server.url) as client:
        every = client.get_inference_statistics()["model_stats"]
        versions = client.get_inference_statistics("add_versions")["model_stats"]
        metadata = client.get_server_metadata()
    assert [(e["name"], e["version"]) for e in every] == [
        ("add_sub", "1"), ("add_versions", "1"), ("add_versions", "2"), ("string_identity", "1")
    ]
    for entry in every:
        assert_triton_shape(entry)
    assert [e["version"] for e in versions] == ["1", "2"]
    assert "statistics" in metadata["extensions"]


def test_unknown_model_or_version_is_an_error(stats_server: tuple[ServerProcess, str]) -> None:
    server, _ = stats_server
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as raw:
        missing = raw.get("/v2/models/nope/stats")
        bad_version = raw.get("/v2/models/add_sub/versions/7/stats")
    assert missing.status_code == 400 and "error" in missing.json()
    assert bad_version.status_code == 400 and "error" in bad_version.json()


def test_grpc_statistics_equal_the_http_document(stats_server: tuple[ServerProcess, str]) -> None:
    server, grpc_url = stats_server
    with grpcclient.InferenceServerClient(grpc_url) as grpc_client:
        grpc_client.infer("add_sub", add_sub_inputs(2, grpcclient))
        response = grpc_client.get_inference_statistics("add_sub")
    with httpclient.InferenceServerClient(server.url) as client:
        http_entry = client.get_inference_statistics("add_sub")["model_stats"][0]
    grpc_entry = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )["model_stats"][0]
    assert int(grpc_entry["inference_count"]) == http_entry["inference_count"]
    assert int(grpc_entry["execution_count"]) == http_entry["execution_count"]
    assert int(grpc_entry["last_inference"]) == http_entry["last_inference"]
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert int(grpc_entry["inference_stats"][key]["count"]) == http_entry["inference_stats"][key]["count"]
        assert int(grpc_entry["inference_stats"][key]["ns"]) == http_entry["inference_stats"][key]["ns"]
    sizes = sorted(int(b["batch_size"]) for b in grpc_entry["batch_stats"])
    assert sizes == [b["batch_size"] for b in http_entry["batch_stats"]]
