"""A Triton deployment moved over unchanged: a tritonserver command line with flags modelport does not
implement, --model-config-name, configs with fields modelport ignores or refuses, and load-API
override files that cannot be written (HTTP and gRPC, through tritonclient)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_model
from support.server import ServerProcess, running_server

CONFIG = """
name: "{name}" platform: "onnxruntime_onnx" max_batch_size: {batch}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{extra}
"""
IGNORED = """optimization { cuda { graphs: true }
  execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" } ] } }"""
REFUSED = """batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" data_type: TYPE_FP32
  source_input: "INPUT0" } ]"""
# tritonserver flags modelport does not implement, in both forms, one repeated
TRITON_FLAGS = [
    "--http-thread-count=4", "--backend-directory", "/opt/tritonserver/backends", "--host-policy=a,b=c",
    "--pinned-memory-pool-byte-size", "268435456", "--cuda-memory-pool-byte-size=0:67108864",
    "--min-supported-compute-capability", "6.0", "--model-load-thread-count=2", "--http-thread-count", "8",
]  # fmt: skip
IGNORED_FLAGS = [
    "--http-thread-count", "--backend-directory", "--host-policy", "--pinned-memory-pool-byte-size",
    "--cuda-memory-pool-byte-size", "--min-supported-compute-capability", "--model-load-thread-count",
]  # fmt: skip
POLL_S = 0.2


def _write(repo: Path, name: str, batch: int = 8, extra: str = "", custom: int | None = None) -> Path:
    folder = write_model(repo, name, small_models.make_add_constant_model(1.0, 4), CONFIG.format(
        name=name, batch=batch, extra=extra))  # fmt: skip
    if custom is not None:
        (folder / "configs").mkdir()
        (folder / "configs" / "h100.pbtxt").write_text(CONFIG.format(name=name, batch=custom, extra=""))
    return folder


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dropin_repo")
    _write(root, "custom", batch=8, custom=2)
    _write(root, "plain", batch=8)
    _write(root, "warned", extra=IGNORED)
    _write(root, "refused", extra=REFUSED)
    return root


@pytest.fixture(scope="module")
def triton_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "dropin_server.log"
    args = [
        "--model-control-mode=poll", f"--repository-poll-secs={POLL_S}", "--model-config-name", "h100",
        "--strict-readiness=false", *TRITON_FLAGS,
    ]  # fmt: skip
    with running_server(repo, log, args) as server:
        yield server


@pytest.fixture(scope="module")
def client(triton_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(triton_server.url) as c:
        yield c


def _infer(client: httpclient.InferenceServerClient, model: str) -> float:
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    return float(client.infer(model, [tensor]).as_numpy("OUTPUT0")[0, 0])


def test_a_triton_command_line_serves_and_warns_once_per_ignored_flag(
    triton_server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    assert client.is_server_live()
    assert _infer(client, "plain") == 1.0
    log = triton_server.log()
    for flag in IGNORED_FLAGS:
        line = f"tritonserver flag {flag} is not supported by modelport and is ignored"
        assert log.count(line) == 1, f"{flag}: {log.count(line)} warnings\n{log[-3000:]}"


def _wait_for_batch(client: httpclient.InferenceServerClient, model: str, batch: int) -> None:
    deadline = time.monotonic() + 15
    while client.get_model_config(model)["max_batch_size"] != batch:
        assert time.monotonic() < deadline, f"{model} never served max_batch_size {batch}"
        time.sleep(POLL_S)


def test_model_config_name_picks_configs_name_pbtxt_and_polls_see_it_change(
    repo: Path, client: httpclient.InferenceServerClient
) -> None:
    assert client.get_model_config("custom")["max_batch_size"] == 2  # configs/h100.pbtxt
    assert client.get_model_config("plain")["max_batch_size"] == 8  # no configs/h100.pbtxt: config.pbtxt
    assert _infer(client, "custom") == 1.0
    custom = repo / "custom" / "configs" / "h100.pbtxt"
    custom.write_text(CONFIG.format(name="custom", batch=3, extra=""))
    _wait_for_batch(client, "custom", 3)
    custom.unlink()
    _wait_for_batch(client, "custom", 8)  # back to config.pbtxt


def test_an_ignored_config_field_loads_with_one_warning(
    triton_server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    assert client.is_model_ready("warned") and _infer(client, "warned") == 1.0
    log = triton_server.log()
    graphs = (
        "model 'warned': config field 'optimization.cuda.graphs' is not supported by modelport and is ignored"
    )
    accelerator = (
        "model 'warned': gpu_execution_accelerator 'tensorrt' is not used by instance group 'warned_0': "
        "it runs on the CPU"
    )
    assert log.count(graphs) == 1 and log.count(accelerator) == 1, log[-3000:]
    assert "model 'plain': config field" not in log  # a config of supported fields is silent


def test_a_refused_config_field_makes_the_model_unavailable_with_the_reason(
    client: httpclient.InferenceServerClient,
) -> None:
    assert not client.is_model_ready("refused")
    (entry,) = [e for e in client.get_model_repository_index() if e["name"] == "refused"]
    assert entry["state"] == "UNAVAILABLE"
    assert "config field 'batch_input' (target 'N') is not supported by modelport: " in entry["reason"]


# --- override files the file system refuses ------------------------------------------------------
CONFIG_JSON = json.dumps({
    "name": "fresh", "platform": "onnxruntime_onnx", "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
})  # fmt: skip
MODEL = small_models.make_add_constant_model(1.0, 4).SerializeToString()
TOO_LONG = "failed to load 'fresh', failed to poll from model repository: file override '1/"


@pytest.fixture(scope="module")
def explicit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("dropin_explicit_repo")
    log = tmp_path_factory.mktemp("logs") / "dropin_explicit.log"
    with running_server(repo, log, ["--model-control-mode=explicit"], grpc=True) as server:
        yield server


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_override_file_name_too_long_answers_tritons_message_without_a_server_path(
    explicit_server: ServerProcess, protocol: str
) -> None:
    module = httpclient if protocol == "http" else grpcclient
    url = explicit_server.url if protocol == "http" else explicit_server.grpc_url
    client = module.InferenceServerClient(url)
    try:
        files = {"file:1/model.onnx": MODEL, "file:1/" + "a" * 300: b"x"}
        with pytest.raises(InferenceServerException) as info:
            client.load_model("fresh", config=CONFIG_JSON, files=files)
        message = info.value.message()
        assert info.value.status() == ("400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT")
        assert message.startswith(TOO_LONG) and message.endswith("...' cannot be written: File name too long")
        assert "/tmp" not in message and "modelport-override-" not in message
        assert not client.is_model_ready("fresh")
        client.load_model("fresh", config=CONFIG_JSON, files={"file:1/model.onnx": MODEL})  # still loads
        assert client.is_model_ready("fresh")
        client.unload_model("fresh")
    finally:
        client.close()
