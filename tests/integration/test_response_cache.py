"""The response cache through real tritonclient HTTP and gRPC against a real server.

A Python model answers OUT = 2 * IN and COUNT = how many requests it has executed, so an answer
from the cache shows as an unchanged COUNT. One server (1 MiB cache, metrics on) serves most
checks, each on a model of its own; eviction, a server without a cache, frontend workers and
malformed flags run servers (or processes) of their own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from support.server import HOST, ServerProcess, free_port, running_server

COUNTING_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executions += 1
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = pb_utils.Tensor("OUT", (data * 2).astype(np.float32))
            count = pb_utils.Tensor("COUNT", np.array([self.executions], dtype=np.int64))
            responses.append(pb_utils.InferenceResponse([out, count]))
        return responses
"""
CACHED = "response_cache { enable: true }"
DECOUPLED_MESSAGE = (
    "Response Cache does not currently support model decoupled_cached with 'decoupled' transaction "
    "policy. Please disable the response cache."
)
SEQUENCE_MESSAGE = (
    "Response Cache does not currently support model sequence_cached with sequence batching scheduler. "
    "Please disable the response cache."
)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write_counting_model(repo: Path, name: str, extra: str = CACHED) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(COUNTING_MODEL)
    (folder / "config.pbtxt").write_text(
        textwrap.dedent(
            f"""
            name: "{name}"
            backend: "python"
            max_batch_size: 0
            input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }} ]
            output [
              {{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }},
              {{ name: "COUNT" data_type: TYPE_INT64 dims: [ 1 ] }}
            ]
            instance_group [ {{ count: 1 kind: KIND_CPU }} ]
            """
        )
        + extra
        + "\n"
    )


def write_ensemble(repo: Path, name: str, step: str) -> None:
    """An ensemble with the cache whose one step is `step` (a counting model without the cache)."""
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }, '
        '{ name: "COUNT" data_type: TYPE_INT64 dims: [ 1 ] } ]\n'
        f'ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1 '
        'input_map { key: "IN" value: "IN" } '
        'output_map [ { key: "OUT" value: "OUT" }, { key: "COUNT" value: "COUNT" } ] } ] }\n'
        f"{CACHED}\n"
    )


def ttl(seconds: float) -> str:
    parameter = f'{{ key: "response_cache_ttl_seconds" value {{ string_value: "{seconds}" }} }}'
    return f"{CACHED}\nparameters {parameter}"


@pytest.fixture(scope="module")
def cache_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    repo = tmp_path_factory.mktemp("cache_repo")
    for name in ("counted", "stats_http", "stats_grpc", "classified", "metered"):
        write_counting_model(repo, name)
    write_counting_model(repo, "uncached", extra="")
    write_counting_model(repo, "step", extra="")
    write_ensemble(repo, "cached_ensemble", "step")
    write_counting_model(repo, "short_lived", extra=ttl(0.5))
    decoupled = "model_transaction_policy { decoupled: true }"
    write_counting_model(repo, "decoupled_cached", extra=f"{CACHED}\n{decoupled}")
    write_counting_model(repo, "sequence_cached", extra=f"{CACHED}\nsequence_batching {{ }}")
    port = free_port()
    args = [
        "--cache-config=local,size=1048576",
        "--allow-metrics=true",
        f"--metrics-port={port}",
        f"--metrics-address={HOST}",
    ]
    log = tmp_path_factory.mktemp("logs") / "cache_server.log"
    with running_server(repo, log, args, grpc=True) as server:
        yield server, f"http://{HOST}:{port}/metrics"


def http_infer(server: ServerProcess, model: str, value: float, **kwargs: Any) -> dict[str, np.ndarray]:
    with httpclient.InferenceServerClient(server.http_url) as client:
        tensor = httpclient.InferInput("IN", [4], "FP32")
        tensor.set_data_from_numpy(np.full(4, value, np.float32))
        result = client.infer(model, [tensor], **kwargs)
        return {name: result.as_numpy(name) for name in ("OUT", "COUNT") if result.as_numpy(name) is not None}


def grpc_infer(server: ServerProcess, model: str, value: float) -> dict[str, np.ndarray]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("IN", [4], "FP32")
        tensor.set_data_from_numpy(np.full(4, value, np.float32))
        result = client.infer(model, [tensor])
        return {name: result.as_numpy(name) for name in ("OUT", "COUNT")}


def count(answer: dict[str, np.ndarray]) -> int:
    return int(answer["COUNT"][0])


def test_a_repeated_request_does_not_reach_the_model(cache_server: tuple[ServerProcess, str]) -> None:
    server, _ = cache_server
    first = http_infer(server, "counted", 1.5)
    assert first["OUT"].tolist() == [3.0] * 4
    again_http = http_infer(server, "counted", 1.5)
    again_grpc = grpc_infer(server, "counted", 1.5)  # the cache is the server's, whatever the protocol
    for again in (again_http, again_grpc):
        assert count(again) == count(first)
        assert again["OUT"].tolist() == first["OUT"].tolist()
    other = grpc_infer(server, "counted", 2.5)  # a different input is a miss
    assert count(other) == count(first) + 1 and other["OUT"].tolist() == [5.0] * 4
    assert count(http_infer(server, "counted", 2.5)) == count(other)


def test_a_cached_ensemble_answers_without_calling_its_steps(cache_server: tuple[ServerProcess, str]) -> None:
    server, _ = cache_server
    first = http_infer(server, "cached_ensemble", 7.0)
    assert first["OUT"].tolist() == [14.0] * 4
    assert count(grpc_infer(server, "cached_ensemble", 7.0)) == count(first)
    assert count(http_infer(server, "step", 7.0)) == count(first) + 1  # the step has no cache itself


def test_models_that_do_not_enable_the_cache_run_every_request(
    cache_server: tuple[ServerProcess, str],
) -> None:
    server, _ = cache_server
    counts = [count(http_infer(server, "uncached", 1.0)) for _ in range(3)]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]


def test_the_outputs_asked_for_are_part_of_the_key_and_hits_are_classified(
    cache_server: tuple[ServerProcess, str],
) -> None:
    server, _ = cache_server
    plain = [httpclient.InferRequestedOutput("OUT"), httpclient.InferRequestedOutput("COUNT")]
    classified = [
        httpclient.InferRequestedOutput("OUT", class_count=2),
        httpclient.InferRequestedOutput("COUNT"),
    ]
    first = http_infer(server, "classified", 1.0, outputs=plain)
    hit = http_infer(server, "classified", 1.0, outputs=classified)
    assert count(hit) == count(first)
    assert hit["OUT"].tolist() == [b"2.000000:0", b"2.000000:1"]
    only_count = http_infer(server, "classified", 1.0, outputs=[httpclient.InferRequestedOutput("COUNT")])
    assert count(only_count) == count(first) + 1  # other outputs asked for: another entry


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_statistics_count_hits_and_misses_as_triton_does(
    cache_server: tuple[ServerProcess, str], protocol: str
) -> None:
    server, _ = cache_server
    model = f"stats_{protocol}"
    infer = http_infer if protocol == "http" else grpc_infer
    for value in (1.0, 1.0, 1.0, 2.0):  # two misses, two hits
        infer(server, model, value)
    if protocol == "http":
        with httpclient.InferenceServerClient(server.http_url) as client:
            doc = client.get_inference_statistics(model)["model_stats"][0]
    else:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            doc = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    stats = doc["inference_stats"]

    def number(value: Any) -> int:
        return int(value)  # the gRPC JSON writes 64-bit numbers as strings

    assert number(stats["cache_hit"]["count"]) == 2 and number(stats["cache_miss"]["count"]) == 2
    assert number(stats["cache_hit"]["ns"]) > 0 and number(stats["cache_miss"]["ns"]) > 0
    assert number(stats["success"]["count"]) == 4 and number(stats["queue"]["count"]) == 4
    assert number(stats["compute_infer"]["count"]) == 2  # success minus cache hits
    assert number(doc["inference_count"]) == 2 and number(doc["execution_count"]) == 2


def test_entries_expire_after_the_models_time_to_live(cache_server: tuple[ServerProcess, str]) -> None:
    server, _ = cache_server
    first = http_infer(server, "short_lived", 1.0)
    assert count(http_infer(server, "short_lived", 1.0)) == count(first)
    time.sleep(0.6)
    assert count(http_infer(server, "short_lived", 1.0)) == count(first) + 1


def test_nv_cache_metrics(cache_server: tuple[ServerProcess, str]) -> None:
    server, url = cache_server
    for value in (1.0, 1.0, 1.0, 3.0):  # two misses, two hits
        http_infer(server, "metered", value)
    with _OPENER.open(url, timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}

    def per_model(name: str) -> float:
        found = [s.value for s in families[name] if s.labels == {"model": "metered", "version": "1"}]
        assert len(found) == 1, families[name]
        return found[0]

    assert per_model("nv_cache_num_hits_per_model") == 2
    assert per_model("nv_cache_num_misses_per_model") == 2
    assert per_model("nv_cache_hit_duration_per_model") >= 0
    assert per_model("nv_cache_miss_duration_per_model") >= 0
    assert per_model("nv_inference_count") == 2  # hits are not inferences
    assert per_model("nv_inference_request_success") == 4
    assert not [s for s in families["nv_cache_num_hits_per_model"] if s.labels["model"] == "uncached"]
    for gauge in ("nv_cache_num_entries", "nv_cache_num_hits", "nv_cache_num_misses", "nv_cache_num_lookups"):
        assert families[gauge][0].value >= 1
    assert 0 < families["nv_cache_util"][0].value < 1
    assert "# TYPE nv_cache_util gauge" in text


@pytest.mark.parametrize(("model", "message"), [("decoupled_cached", DECOUPLED_MESSAGE),
                                                 ("sequence_cached", SEQUENCE_MESSAGE)])
def test_decoupled_and_sequence_models_with_the_cache_are_refused(
    cache_server: tuple[ServerProcess, str], model: str, message: str
) -> None:
    server, _ = cache_server
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert not client.is_model_ready(model)
        index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index[model]["state"] == "UNAVAILABLE"
    assert message in index[model]["reason"]
    assert message in server.log()


# --- servers of their own ---------------------------------------------------------------------------


def test_eviction_in_a_small_cache(tmp_path: Path) -> None:
    write_counting_model(tmp_path / "repo", "counted")
    # An entry is OUT (16 bytes) + COUNT (8 bytes) + 64 bytes of bookkeeping: room for three.
    with running_server(tmp_path / "repo", tmp_path / "log", ["--cache-config=local,size=300"]) as server:
        counts = {value: count(http_infer(server, "counted", value)) for value in (1.0, 2.0, 3.0)}
        assert count(http_infer(server, "counted", 1.0)) == counts[1.0]  # a hit; 2.0 is now the oldest
        count(http_infer(server, "counted", 4.0))  # evicts 2.0
        assert count(http_infer(server, "counted", 3.0)) == counts[3.0]
        assert count(http_infer(server, "counted", 1.0)) == counts[1.0]
        assert count(http_infer(server, "counted", 2.0)) > counts[3.0]  # executed again


def test_a_cached_model_on_a_server_without_a_cache_runs_every_request_with_a_warning(tmp_path: Path) -> None:
    write_counting_model(tmp_path / "repo", "counted")
    with running_server(tmp_path / "repo", tmp_path / "log") as server:
        first = count(http_infer(server, "counted", 1.0))
        assert count(http_infer(server, "counted", 1.0)) == first + 1
        assert "model 'counted' enables response_cache, but the server has no response cache" in server.log()


def test_the_cache_works_behind_frontend_workers(tmp_path: Path) -> None:
    write_counting_model(tmp_path / "repo", "counted")
    args = ["--frontend-workers=2", "--cache-config=local,size=65536"]
    with running_server(tmp_path / "repo", tmp_path / "log", args) as server:
        first = http_infer(server, "counted", 1.0)
        for _ in range(3):  # fresh connections, whichever worker takes them
            assert count(http_infer(server, "counted", 1.0)) == count(first)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cache-config=size=100"], "No cache specified. --cache-config option format is"),
        (["--cache-config=local,size=8192", "--cache-config=redis,k=v"], "multiple cache configurations"),
        (["--response-cache-byte-size=12345", "--cache-config=local,size=67890"], "Incompatible flags"),
        (["--cache-config=local,other=1"], "config didn't contain a valid 'size' field"),
    ],
)
def test_malformed_cache_flags_stop_the_server(tmp_path: Path, flags: list[str], message: str) -> None:
    command = [sys.executable, "-m", "modelport", "serve", "--model-repository", str(tmp_path), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert message in done.stderr
