"""Model lifecycle through tritonclient against a real server in explicit mode.

Load/unload (HTTP and gRPC), load overrides and their path confinement, the traffic split and
rollback (beyond Triton), and a reload under continuous load that must not fail one request.
Models are tiny ONNX graphs whose output is INPUT0 + <constant>, so every response tells which
copy of the model computed it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models
from support.server import ServerProcess, running_server

CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: {policy}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
CONFIG_JSON = {
    "name": "fresh",
    "platform": "onnxruntime_onnx",
    "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def model_bytes(constant: float) -> bytes:
    return bytes(small_models.make_add_constant_model(constant, 4).SerializeToString())


def write_versions(repo: Path, name: str, constants: dict[int, float], policy: str = "{ all: { } }") -> Path:
    folder = repo / name
    for version, constant in constants.items():
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        (folder / str(version) / "model.onnx").write_bytes(model_bytes(constant))
    (folder / "config.pbtxt").write_text(CONFIG.format(name=name, policy=policy))
    return folder


def infer(client: httpclient.InferenceServerClient, model: str, version: str = "") -> tuple[str, float]:
    """(version that answered, constant it added)."""
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    result = client.infer(model, [tensor], model_version=version)
    return result.get_response()["model_version"], float(result.as_numpy("OUTPUT0")[0, 0])


def post_json(server: ServerProcess, path: str, doc: object) -> dict:
    request = urllib.request.Request(server.base_url + path, data=json.dumps(doc).encode(), method="POST")
    with _OPENER.open(request, timeout=10) as response:
        return dict(json.loads(response.read()))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle_repo")
    write_versions(root, "ab", {1: 1.0, 2: 2.0})
    write_versions(root, "lazy", {1: 5.0})
    write_versions(root, "reloaded", {1: 1.0}, policy="{ latest: { num_versions: 1 } }")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "lifecycle_server.log"
    args = ["--model-control-mode=explicit", "--load-model=ab", "--load-model=reloaded"]
    with running_server(repo, log, args, grpc=True) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(server.url)
    yield c
    c.close()


def index(client: httpclient.InferenceServerClient) -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (e["name"], e.get("version", "")): (e.get("state", ""), e.get("reason", ""))
        for e in client.get_model_repository_index()
    }


def test_explicit_load_and_unload_over_http(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    assert index(client)[("lazy", "")] == ("", "")
    assert not client.is_model_ready("lazy")
    client.load_model("lazy")
    assert client.is_model_ready("lazy")
    assert infer(client, "lazy") == ("1", 5.0)
    assert index(client)[("lazy", "1")] == ("READY", "")
    client.unload_model("lazy")
    assert index(client)[("lazy", "1")] == ("UNAVAILABLE", "unloaded")
    assert not client.is_model_ready("lazy")
    assert client.is_server_ready()  # an unloaded model does not count against readiness
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("lazy")
    assert "has no available versions" in str(info.value)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("nosuch")
    assert info.value.status() == "400"  # Triton answers 500; the mistake is the client's
    assert "failed to load 'nosuch', failed to poll from model repository" in info.value.message()
    request = urllib.request.Request(
        server.base_url + "/v2/repository/index", data=b'{"ready": true}', method="POST"
    )
    with _OPENER.open(request, timeout=10) as response:
        ready = json.loads(response.read())
    assert ready and all(e["state"] == "READY" for e in ready)
    assert "lazy" not in {e["name"] for e in ready}


def test_explicit_load_and_unload_over_grpc(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)  # type: ignore[attr-defined]
    try:
        client.load_model("lazy")
        assert client.is_model_ready("lazy")
        states = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
        assert states[("lazy", "1")] == "READY"
        client.unload_model("lazy")
        assert not client.is_model_ready("lazy")
        models = client.get_model_repository_index().models
        assert {(m.name, m.version, m.state, m.reason) for m in models if m.name == "lazy"} == {
            ("lazy", "1", "UNAVAILABLE", "unloaded")
        }
    finally:
        client.close()


def test_overrides_and_path_confinement_over_grpc(server: ServerProcess, repo: Path) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)  # type: ignore[attr-defined]
    try:
        config = json.dumps({**CONFIG_JSON, "name": "grpc_fresh"})
        client.load_model("grpc_fresh", config=config, files={"file:1/model.onnx": model_bytes(9.0)})
        assert client.is_model_ready("grpc_fresh")
        with pytest.raises(InferenceServerException) as info:
            client.load_model("grpc_fresh", config=config, files={"file:../../evil.onnx": b"x"})
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "is refused" in info.value.message()
        assert client.is_model_ready("grpc_fresh")  # the failed load left the loaded one serving
        client.unload_model("grpc_fresh")
        assert not (repo / "grpc_fresh").exists() and not (repo.parent / "evil.onnx").exists()
    finally:
        client.close()


def test_load_with_config_and_file_overrides(client: httpclient.InferenceServerClient, repo: Path) -> None:
    config = json.dumps(CONFIG_JSON)
    client.load_model("fresh", config=config, files={"file:1/model.onnx": model_bytes(42.0)})
    assert infer(client, "fresh") == ("1", 42.0)
    assert not (repo / "fresh").exists()  # the private copy lives elsewhere
    client.unload_model("fresh")


@pytest.mark.parametrize(
    "key", ["file:../escaped/model.onnx", "file:/tmp/modelport-abs.onnx", "file:1/../../x.onnx"]
)
def test_path_traversal_in_file_overrides_is_refused(
    client: httpclient.InferenceServerClient, repo: Path, key: str
) -> None:
    config = json.dumps({**CONFIG_JSON, "name": "lazy"})
    with pytest.raises(InferenceServerException) as info:
        client.load_model("lazy", config=config, files={key: b"not a model"})
    assert info.value.status() == "400"
    assert "is refused" in info.value.message()
    assert not (repo / "escaped").exists() and not (repo.parent / "escaped").exists()
    assert not Path("/tmp/modelport-abs.onnx").exists()


def test_traffic_split_90_10_over_1000_requests(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    doc = post_json(server, "/v2/models/ab/traffic", {"weights": {"1": 90, "2": 10}})
    assert doc["weights"] == {"1": 90, "2": 10} and doc["source"] == "api"
    try:
        served = Counter(infer(client, "ab")[0] for _ in range(1000))
        assert abs(served["1"] - 900) <= 30 and abs(served["2"] - 100) <= 30, served
        stats = {
            s["version"]: s["inference_count"] for s in client.get_inference_statistics("ab")["model_stats"]
        }
        assert stats["1"] >= served["1"] and stats["2"] >= served["2"]  # per-version statistics to compare
    finally:
        post_json(server, "/v2/models/ab/traffic", {"weights": None, "pin": None})


def test_rollback_with_the_cli_takes_effect_on_the_next_request(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    assert infer(client, "ab")[0] == "2"  # newest
    command = [sys.executable, "-m", "modelport", "traffic", "ab", "--url", server.url]
    result = subprocess.run([*command, "--pin", "1"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "pinned to:      1" in result.stdout
    assert [infer(client, "ab")[0] for _ in range(20)] == ["1"] * 20
    assert infer(client, "ab", "2")[0] == "2"  # explicit versions still reach their version
    result = subprocess.run([*command, "--unpin"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert infer(client, "ab")[0] == "2"
    bad = subprocess.run([*command, "--pin", "9"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "not READY" in bad.stderr


class LoadLoop:
    """A client thread sending requests back to back, counting answers by constant and failures."""

    def __init__(self, url: str, model: str) -> None:
        self._url, self._model = url, model
        self.seen: Counter[float] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def count(self) -> int:
        return sum(self.seen.values()) + len(self.failures)

    def wait_for(self, constant: float, at_least: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen[constant] < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.seen[constant] >= at_least, f"saw {self.seen}, failures {self.failures[:3]}"

    def _run(self) -> None:
        client = httpclient.InferenceServerClient(self._url)
        try:
            while not self._stop.is_set():
                try:
                    self.seen[infer(client, self._model)[1]] += 1
                except Exception as exc:
                    self.failures.append(repr(exc))
        finally:
            client.close()


def test_reload_under_continuous_load_fails_no_request(
    server: ServerProcess, client: httpclient.InferenceServerClient, repo: Path
) -> None:
    model_file = repo / "reloaded" / "1" / "model.onnx"
    with contextlib.ExitStack() as stack:
        loops = [stack.enter_context(LoadLoop(server.url, "reloaded")) for _ in range(3)]
        loops[0].wait_for(1.0, at_least=100)
        for constant in (10.0, 20.0, 30.0):
            model_file.write_bytes(model_bytes(constant))
            client.load_model("reloaded")  # same version, new file: swapped in place
            loops[0].wait_for(constant, at_least=150)
        (repo / "reloaded" / "2").mkdir()
        (repo / "reloaded" / "2" / "model.onnx").write_bytes(model_bytes(200.0))
        client.load_model("reloaded")  # a new version takes over; version 1 drains and goes
        for loop in loops:
            loop.wait_for(200.0, at_least=150)
    total = sum(loop.count for loop in loops)
    failures = [f for loop in loops for f in loop.failures]
    print(f"\nreload under load: {total} requests, {len(failures)} failed")
    assert failures == []
    assert total > 1000
    states = index(client)
    assert states[("reloaded", "1")] == ("UNAVAILABLE", "unloaded")
    assert states[("reloaded", "2")] == ("READY", "")
