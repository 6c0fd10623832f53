"""Model repositories in S3, GCS and Azure Blob, served through real emulators on 127.0.0.1.

Each store: a local root and a bucket root side by side; the bucket's model serves; in poll mode a new
version uploaded while clients send is served with no failed request; a version whose model file has
not arrived yet is not loaded; a deleted model goes. Unreadable roots (refused credentials, a missing
bucket, a missing extra) leave their models UNAVAILABLE with the reason while the others serve.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from support.models import load_small_models
from support.object_stores import (
    Emulator,
    azure_connection,
    azurite,
    filesystem,
    gcs_emulator,
    moto_s3,
)
from support.server import ServerProcess, free_port, running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploy_tools import MAKE_TARGET, azurite_path

POLL_SECS = 0.25
CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
small_models = load_small_models()


def model_bytes(constant: float) -> bytes:
    return bytes(small_models.make_add_constant_model(constant, 4).SerializeToString())


def put_version(fs: Any, prefix: str, name: str, version: int, constant: float) -> None:
    fs.pipe_file(f"{prefix}/{name}/config.pbtxt", CONFIG.format(name=name).encode())
    fs.pipe_file(f"{prefix}/{name}/{version}/model.onnx", model_bytes(constant))


def write_local(root: Path, name: str, constant: float) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    (root / name / "1" / "model.onnx").write_bytes(model_bytes(constant))


def infer_constant(client: httpclient.InferenceServerClient, model: str) -> float:
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    return float(client.infer(model, [tensor]).as_numpy("OUTPUT0")[0, 0])


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def index(client: httpclient.InferenceServerClient) -> dict[tuple[str, str], dict[str, str]]:
    return {(e["name"], e.get("version", "")): e for e in client.get_model_repository_index()}


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """The server subprocess inherits these (credentials, emulator hosts)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def store(scheme: str, workdir: Path) -> Iterator[tuple[Emulator, str]]:
    """A running emulator of `scheme` with an empty bucket; yields it and the repository URL."""
    if scheme == "s3":
        with moto_s3() as emulator:
            filesystem("s3", emulator).mkdir("models-s3")
            yield emulator, f"s3://{emulator.endpoint}/models-s3/repo"
    elif scheme == "gs":
        with gcs_emulator(workdir) as emulator:
            filesystem("gs", emulator).mkdir("models-gs")
            yield emulator, "gs://models-gs/repo"
    else:
        binary = azurite_path()
        if binary is None:
            pytest.skip(f"Azurite or node is not installed (run `{MAKE_TARGET}`)")
        with azurite(binary) as emulator:
            filesystem("as", emulator).mkdir("models-as")
            yield emulator, f"as://{emulator.endpoint.rsplit('/', 1)[1]}/models-as/repo"


def bucket_prefix(url: str) -> str:
    """bucket/path of a repository URL (the uploader's view of the same place)."""
    tail = url.split("://", 1)[1]
    if tail.startswith(("http://", "https://")):
        tail = tail.split("://", 1)[1].split("/", 1)[1]
    elif url.startswith("as://"):
        tail = tail.split("/", 1)[1]
    return tail


@pytest.mark.parametrize("scheme", ["s3", "gs", "as"])
def test_bucket_repository_serves_and_follows_changes(scheme: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_local(local, "local_model", 5.0)
    with store(scheme, tmp_path) as (emulator, url), environment(emulator.env):
        fs = filesystem(scheme, emulator)
        prefix = bucket_prefix(url)
        put_version(fs, prefix, "remote", 1, 1.0)
        args = ["--model-repository", url, f"--model-cache-dir={tmp_path / 'cache'}",
                "--model-control-mode=poll", f"--repository-poll-secs={POLL_SECS}"]  # fmt: skip
        with running_server(local, tmp_path / "server.log", args) as server:
            client = httpclient.InferenceServerClient(server.url)
            try:
                assert infer_constant(client, "local_model") == 5.0
                assert infer_constant(client, "remote") == 1.0
                _new_version_under_load(server, fs, prefix)
                _half_uploaded_version_waits(client, fs, prefix)
                fs.rm(f"{prefix}/remote", recursive=True)
                wait_until(lambda: "remote" not in {name for name, _ in index(client)})
                assert infer_constant(client, "local_model") == 5.0
            finally:
                client.close()
            assert emulator.env.get("AWS_SECRET_ACCESS_KEY", "never-logged") not in server.log()


def _new_version_under_load(server: ServerProcess, fs: Any, prefix: str) -> None:
    seen: Counter[float] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpclient.InferenceServerClient(server.url) as client:
            while not stop.is_set():
                try:
                    seen[infer_constant(client, "remote")] += 1
                except Exception as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=send, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: seen[1.0] > 20)
        put_version(fs, prefix, "remote", 2, 2.0)  # uploaded while the clients keep sending
        wait_until(lambda: seen[2.0] > 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    print(f"\nbucket version pick-up under load: {sum(seen.values())} served, {len(failures)} failed")
    assert failures == []


def _half_uploaded_version_waits(client: httpclient.InferenceServerClient, fs: Any, prefix: str) -> None:
    fs.pipe_file(f"{prefix}/remote/3/notes.txt", b"model.onnx is still uploading")
    time.sleep(POLL_SECS * 6)  # several polls see version 3 without its model file
    assert infer_constant(client, "remote") == 2.0
    assert index(client)[("remote", "2")]["state"] == "READY"
    fs.pipe_file(f"{prefix}/remote/3/model.onnx", model_bytes(3.0))
    wait_until(lambda: infer_constant(client, "remote") == 3.0)


def test_unreadable_roots_are_unavailable_with_the_reason(tmp_path: Path) -> None:
    """Refused credentials (S3 with auth enforced, Azure with a wrong key), a missing bucket (GCS):
    the local model serves, each remote model is UNAVAILABLE saying why, and no secret is logged."""
    local = tmp_path / "local"
    write_local(local, "local_model", 5.0)
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(moto_s3(enforce_auth=True))
        gs = stack.enter_context(gcs_emulator(tmp_path))
        roots = {"s3_model": f"s3://{s3.endpoint}/locked/repo", "gs_model": "gs://no-such-bucket/repo"}
        env = {**s3.env, **gs.env}
        binary = azurite_path()
        if binary is not None:
            az = stack.enter_context(azurite(binary))
            wrong_key = base64.b64encode(secrets.token_bytes(32)).decode()  # not the key Azurite was given
            env["AZURE_STORAGE_CONNECTION_STRING"] = azure_connection(az.endpoint, wrong_key)
            roots["as_model"] = "as://modelporttest/models/repo"
        stack.enter_context(environment(env))
        args = [f"--model-cache-dir={tmp_path / 'cache'}", "--model-control-mode=explicit",
                "--load-model=local_model", *(f"--load-model={name}" for name in roots)]  # fmt: skip
        for url in roots.values():
            args += ["--model-repository", url]
        with running_server(local, tmp_path / "server.log", args) as server:
            with httpclient.InferenceServerClient(server.url) as client:
                assert infer_constant(client, "local_model") == 5.0
                rows = index(client)
                reasons = {name: rows[(name, "")]["reason"] for name in roots}
                assert all(rows[(name, "")]["state"] == "UNAVAILABLE" for name in roots)
            log = server.log()
        assert "access denied" in reasons["s3_model"], reasons
        assert "does not exist" in reasons["gs_model"], reasons
        if "as_model" in roots:
            assert "access denied" in reasons["as_model"], reasons
        for secret in (s3.env["AWS_SECRET_ACCESS_KEY"], env.get("AZURE_STORAGE_CONNECTION_STRING", "-")):
            assert secret not in log and all(secret not in reason for reason in reasons.values())
    if binary is None:
        pytest.skip(f"Azure part skipped: Azurite or node is not installed (run `{MAKE_TARGET}`)")


def test_missing_extra_names_the_pip_install(tmp_path: Path) -> None:
    """Without s3fs the model is UNAVAILABLE and the reason says which extra to install."""
    local = tmp_path / "local"
    write_local(local, "local_model", 5.0)
    blocker = tmp_path / "no_s3fs"
    blocker.mkdir()
    (blocker / "s3fs.py").write_text("raise ImportError('s3fs is not installed here')\n")
    path = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH", "")]))
    args = ["--model-repository", "s3://some-bucket/repo", f"--model-cache-dir={tmp_path / 'cache'}",
            "--model-control-mode=explicit", "--load-model=local_model", "--load-model=remote"]  # fmt: skip
    with (
        environment({"PYTHONPATH": path}),
        running_server(local, tmp_path / "server.log", args) as server,
        httpclient.InferenceServerClient(server.url) as client,
    ):
        assert infer_constant(client, "local_model") == 5.0
        assert "pip install modelport[s3]" in index(client)[("remote", "")]["reason"]



def test_unreachable_store_is_retried(tmp_path: Path) -> None:
    """An S3 endpoint that is down: the model is UNAVAILABLE saying the store cannot be reached, the
    local model serves, and once the store answers the next load serves the model."""
    local = tmp_path / "local"
    write_local(local, "local_model", 5.0)
    port = free_port()
    url = f"s3://http://127.0.0.1:{port}/models-s3/repo"
    args = ["--model-repository", url, f"--model-cache-dir={tmp_path / 'cache'}",
            "--model-control-mode=explicit", "--load-model=local_model", "--load-model=remote"]  # fmt: skip
    keys = {"AWS_ACCESS_KEY_ID": "modelport-test", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16)}
    with (
        environment(keys),
        running_server(local, tmp_path / "server.log", args) as server,
        httpclient.InferenceServerClient(server.url) as client,
    ):
        assert infer_constant(client, "local_model") == 5.0
        assert "cannot reach the object store" in index(client)[("remote", "")]["reason"]
        with moto_s3(port=port) as emulator:
            fs = filesystem("s3", emulator)
            fs.mkdir("models-s3")
            put_version(fs, "models-s3/repo", "remote", 1, 1.0)
            client.load_model("remote")
            assert infer_constant(client, "remote") == 1.0
