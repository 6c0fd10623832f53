"""Poll mode: versions and models dropped into (or removed from) the repository while clients keep sending.

The model adds a per-version constant to its input, so each response tells which version served it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models
from support.server import ServerProcess, running_server

POLL_SECS = 0.2
CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def model_bytes(constant: float) -> bytes:
    return bytes(small_models.make_add_constant_model(constant, 4).SerializeToString())


def write_version(repo: Path, name: str, version: int, constant: float) -> None:
    folder = repo / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / str(version) / "model.onnx").write_bytes(model_bytes(constant))
    if not (folder / "config.pbtxt").exists():
        (folder / "config.pbtxt").write_text(CONFIG.format(name=name))


def infer_constant(client: httpclient.InferenceServerClient, model: str) -> float:
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    return float(client.infer(model, [tensor]).as_numpy("OUTPUT0")[0, 0])


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("poll_repo")
    write_version(root, "polled", 1, 1.0)
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "poll_server.log"
    args = ["--model-control-mode=poll", f"--repository-poll-secs={POLL_SECS}"]
    with running_server(repo, log, args) as proc:
        yield proc


def test_new_version_is_picked_up_under_load_without_failures(server: ServerProcess, repo: Path) -> None:
    seen: Counter[float] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def send() -> None:
        client = httpclient.InferenceServerClient(server.url)
        try:
            while not stop.is_set():
                try:
                    seen[infer_constant(client, "polled")] += 1
                except Exception as exc:
                    failures.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=send, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: seen[1.0] > 50)
        write_version(repo, "polled", 2, 2.0)  # dropped in while the clients keep sending
        wait_until(lambda: seen[2.0] > 50)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    print(f"\npoll pick-up under load: {sum(seen.values()) + len(failures)} requests, {len(failures)} failed")
    assert failures == []
    client = httpclient.InferenceServerClient(server.url)
    try:
        states = {(e["name"], e.get("version")): e.get("state") for e in client.get_model_repository_index()}
        assert states[("polled", "2")] == "READY"
        assert states[("polled", "1")] == "UNAVAILABLE"  # latest-1 policy: version 1 retired
        assert client.is_server_ready()
    finally:
        client.close()


def test_new_model_appears_and_removed_model_goes(server: ServerProcess, repo: Path) -> None:
    client = httpclient.InferenceServerClient(server.url)
    try:
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("added")
        write_version(repo, "added", 1, 7.0)
        wait_until(lambda: client.is_model_ready("added"))
        assert infer_constant(client, "added") == 7.0
        for path in sorted((repo / "added").rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (repo / "added").rmdir()
        wait_until(lambda: "added" not in {e["name"] for e in client.get_model_repository_index()})
        assert not client.is_model_ready("added")
    finally:
        client.close()


def test_half_written_version_is_not_loaded_until_complete(server: ServerProcess, repo: Path) -> None:
    client = httpclient.InferenceServerClient(server.url)
    try:
        write_version(repo, "partial", 1, 1.0)
        wait_until(lambda: client.is_model_ready("partial"))
        target = repo / "partial" / "2" / "model.onnx"
        target.parent.mkdir()
        data = model_bytes(2.0)
        step = max(1, len(data) // 10)
        with target.open("wb") as handle:  # a slow copy: growing over a few poll intervals
            for start in range(0, len(data), step):
                handle.write(data[start : start + step])
                handle.flush()
                time.sleep(POLL_SECS * 0.4)
                assert infer_constant(client, "partial") == 1.0
        wait_until(lambda: infer_constant(client, "partial") == 2.0)
        assert client.is_server_ready()
    finally:
        client.close()
