"""modelport_model_state on a real server's /metrics: a model that failed to load is visible to alerts.

The server runs in explicit mode with a healthy model, one whose model.onnx is not ONNX and one it never
loads, with --exit-on-error=false so that it keeps serving. The gauge is read with prometheus_client's parser.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from support.models import small_models, write_broken_config, write_broken_onnx
from support.server import HOST, ServerProcess, free_port, running_server

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    repo = tmp_path_factory.mktemp("state_repo")
    small_models.write_add_sub(repo)
    write_broken_onnx(repo)
    write_broken_config(repo)  # never loaded
    port = free_port()
    args = [
        "--model-control-mode=explicit", "--load-model=add_sub", "--load-model=broken_onnx",
        "--exit-on-error=false",
        "--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}",
    ]
    with running_server(repo, tmp_path_factory.mktemp("logs") / "state_server.log", args) as proc:
        yield proc, f"http://{HOST}:{port}/metrics"


def _states(url: str) -> dict[tuple[str, str], dict[str, float]]:
    """(model, version) -> {state: value} from one scrape."""
    with _OPENER.open(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelport_model_state":
            assert family.type == "gauge"
            for sample in family.samples:
                key = (sample.labels["model"], sample.labels["version"])
                found.setdefault(key, {})[sample.labels["state"]] = sample.value
    return found


def test_serving_and_failed_versions_have_their_state(server: tuple[ServerProcess, str]) -> None:
    _, url = server
    states = _states(url)
    assert set(states) == {("add_sub", "1"), ("broken_onnx", "1")}
    assert states[("add_sub", "1")] == {s: float(s == "READY") for s in STATES}
    assert states[("broken_onnx", "1")] == {s: float(s == "UNAVAILABLE") for s in STATES}


def test_a_deliberate_unload_leaves_the_gauge_and_a_load_returns(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    client = httpclient.InferenceServerClient(proc.url)
    try:
        client.unload_model("add_sub")
        assert client.get_model_repository_index()[0]["state"] == "UNAVAILABLE"  # Triton's index keeps it
        assert set(_states(url)) == {("broken_onnx", "1")}  # nothing is wrong with it: no alert
        client.load_model("add_sub")
        assert _states(url)[("add_sub", "1")]["READY"] == 1.0
    finally:
        client.close()


def test_models_never_asked_to_load_are_not_reported(server: tuple[ServerProcess, str]) -> None:
    """broken_config is in the repository but explicit mode never loaded it: no state, nothing to alert on."""
    proc, url = server
    client = httpclient.InferenceServerClient(proc.url)
    try:
        rows = {row["name"]: row for row in client.get_model_repository_index()}
    finally:
        client.close()
    assert rows["broken_config"] == {"name": "broken_config"}
    assert "broken_config" not in {name for name, _ in _states(url)}
