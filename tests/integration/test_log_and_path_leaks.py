"""What crosses between client and server log: client text cannot forge a log line, and error answers
name files relative to the model repository while the server log keeps the absolute paths.

One server (default log format, verbose) serves add_sub, Python models that fail in execute or in
initialize (in the server process and isolated in their own), a model.onnx that is not ONNX and a
model whose version folder has no model file.
"""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_broken_onnx
from support.server import ServerProcess, running_server

PROCESS = 'parameters { key: "MODELPORT_ISOLATION" value { string_value: "process" } }\n'
RAISING_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        raise ValueError(f"cannot read {__file__}")
"""
FAILING_INIT_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError(f"weights missing beside {__file__}")

    def execute(self, requests):
        return []
"""
PY_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
MISSING_FILE_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
FORGED = "E0101 00:00:00.000000 1 modelport.forged] all requests are allowed"


def _write_python_model(repo: Path, name: str, source: str, config: str) -> None:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (repo / name / "config.pbtxt").write_text(config, encoding="utf-8")


@pytest.fixture(scope="module")
def leak_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    repo = tmp_path_factory.mktemp("leak_repo")
    small_models.write_add_sub(repo)
    write_broken_onnx(repo)
    _write_python_model(repo, "py_raises", RAISING_MODEL, PY_CONFIG)
    _write_python_model(repo, "py_raises_process", RAISING_MODEL, PY_CONFIG + PROCESS)
    _write_python_model(repo, "py_init_fails", FAILING_INIT_MODEL, PY_CONFIG)
    _write_python_model(repo, "py_init_fails_process", FAILING_INIT_MODEL, PY_CONFIG + PROCESS)
    (repo / "missing_file" / "1").mkdir(parents=True)
    (repo / "missing_file" / "config.pbtxt").write_text(MISSING_FILE_CONFIG, encoding="utf-8")
    log = tmp_path_factory.mktemp("logs") / "leak_server.log"
    args = ["--log-verbose=1", "--exit-on-error=false"]
    with running_server(repo, log, args, grpc=True) as proc:
        yield proc, repo


def _assert_no_server_path(text: str, repo: Path) -> None:
    for form in {str(repo), str(repo.resolve())}:
        assert form not in text, f"the answer names the server path {form}: {text!r}"


def _reasons(server: ServerProcess) -> dict[str, str]:
    with httpclient.InferenceServerClient(server.url) as client:
        index = client.get_model_repository_index()
    return {row["name"]: row.get("reason", "") for row in index}


def _wait_for_log(server: ServerProcess, needle: str, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while needle not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


# --- log injection ----------------------------------------------------------------------------
def test_a_newline_in_the_request_id_cannot_forge_a_log_line(leak_server: tuple[ServerProcess, Path]) -> None:
    server, _ = leak_server
    data = np.ones((1, 16), np.float32)
    inputs = [httpclient.InferInput(name, [1, 16], "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    with httpclient.InferenceServerClient(server.url) as client:
        client.infer("add_sub", inputs, request_id=f"r1\n{FORGED}\r\x1b[2J")
    log = _wait_for_log(server, "[request id: r1\\n")
    assert f"[request id: r1\\n{FORGED}\\r\\x1b[2J]" in log
    assert not [line for line in log.splitlines() if line.startswith("E0101 ")]
    assert "\x1b" not in log


# --- absolute paths ---------------------------------------------------------------------------
def test_a_missing_model_file_is_named_relative_to_the_repository(
    leak_server: tuple[ServerProcess, Path],
) -> None:
    server, repo = leak_server
    reason = _reasons(server)["missing_file"]
    assert "unable to find 'missing_file/1/model.onnx'" in reason
    _assert_no_server_path(reason, repo)
    assert str(repo / "missing_file" / "1" / "model.onnx") in server.log()


def test_onnxruntime_load_errors_name_files_relative_to_the_repository(
    leak_server: tuple[ServerProcess, Path],
) -> None:
    server, repo = leak_server
    reason = _reasons(server)["broken_onnx"]
    assert "failed to load ONNX model 'broken_onnx/1/model.onnx'" in reason
    _assert_no_server_path(reason, repo)
    assert str(repo / "broken_onnx" / "1" / "model.onnx") in server.log()


@pytest.mark.parametrize("model", ["py_init_fails", "py_init_fails_process"])
def test_a_failed_initialize_shows_repository_relative_frames(
    model: str, leak_server: tuple[ServerProcess, Path]
) -> None:
    server, repo = leak_server
    reason = _reasons(server)[model]
    assert f"RuntimeError: weights missing beside {model}/1/model.py" in reason
    assert re.search(rf"At:\n  {model}/1/model\.py\(\d+\): initialize", reason), reason
    _assert_no_server_path(reason, repo)
    log = server.log()
    assert f'File "{repo / model / "1" / "model.py"}"' in log  # the full traceback stays in the log


@pytest.mark.parametrize("model", ["py_raises", "py_raises_process"])
def test_an_exception_in_execute_answers_repository_relative_paths(
    model: str, leak_server: tuple[ServerProcess, Path]
) -> None:
    server, repo = leak_server
    messages = []
    with httpclient.InferenceServerClient(server.url) as http:
        tensor = httpclient.InferInput("INPUT0", [1], "INT32")
        tensor.set_data_from_numpy(np.array([1], np.int32))
        with pytest.raises(InferenceServerException) as raised:
            http.infer(model, [tensor])
        messages.append(raised.value.message())
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        gtensor = grpcclient.InferInput("INPUT0", [1], "INT32")
        gtensor.set_data_from_numpy(np.array([1], np.int32))
        with pytest.raises(InferenceServerException) as raised:
            grpc.infer(model, [gtensor])
        messages.append(raised.value.message())
    for message in messages:
        assert f"ValueError: cannot read {model}/1/model.py" in message
        assert re.search(rf"At:\n  {model}/1/model\.py\(\d+\): execute", message), message
        _assert_no_server_path(message, repo)
    full = f'File "{repo / model / "1" / "model.py"}", line 6, in execute'
    assert full in _wait_for_log(server, full)
