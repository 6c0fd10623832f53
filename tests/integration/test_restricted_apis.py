"""Triton's restricted APIs (--http-restricted-api, --grpc-restricted-protocol) through real clients.

The server runs in explicit mode, where the repository load API with a Python model's code would
run that code in the server: restricted, it is refused without the header (HTTP 403, gRPC
UNAVAILABLE, Triton's texts) and works with it. Inference is restricted under a second key;
categories left open keep answering without any header.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from integration.grpc_support import running_grpc_server
from support.models import small_models
from support.server import ServerProcess, running_server

ADMIN = {"admin-key": "s3cret:=x"}  # a value may hold ':' and '='
INFER = {"infer-key": "letmein"}
GRPC_ADMIN = {"triton-grpc-protocol-admin-key": "s3cret:=x"}
GRPC_INFER = {"triton-grpc-protocol-infer-key": "letmein"}
FLAGS = [
    "--model-control-mode=explicit",
    "--load-model=add_sub",
    "--http-restricted-api=model-repository,trace:admin-key=s3cret:=x",
    "--http-restricted-api=inference:infer-key=letmein",
    "--grpc-restricted-protocol=model-repository,trace:admin-key=s3cret:=x",
    "--grpc-restricted-protocol=inference:infer-key=letmein",
]
HTTP_REFUSAL = "This API is restricted, expecting header '{}'"
GRPC_REFUSAL = "This protocol is restricted, expecting header 'triton-grpc-protocol-{}'"
CONFIG = {
    "name": "{name}",
    "backend": "python",
    "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
}
# Leaves a mark when the server runs it: the code a load with files= brings in.
CODE = """
from pathlib import Path
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        Path({marker!r}).write_text("ran")

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() * 3)]
            )
            for r in requests
        ]
"""


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("restricted_repo")
    small_models.write_add_sub(repo)
    log = tmp_path_factory.mktemp("restricted_logs") / "server.log"
    with running_grpc_server(repo, log, FLAGS) as proc:
        yield proc


@pytest.fixture(scope="module")
def hc(restricted: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(restricted.http_url) as client:
        yield client


@pytest.fixture
def gc(restricted: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(restricted.grpc_url) as client:
        yield client


def _load_args(name: str, marker: Path) -> dict[str, Any]:
    config = json.dumps(CONFIG).replace("{name}", name)
    code = textwrap.dedent(CODE).format(marker=str(marker)).encode()
    return {"config": config, "files": {"file:1/model.py": code}}


def _inputs(module: Any, width: int = 4) -> list[Any]:
    inp = module.InferInput("INPUT0", [1, width], "FP32")
    inp.set_data_from_numpy(np.ones((1, width), np.float32))
    return [inp]


def _add_sub_inputs(module: Any) -> list[Any]:
    inputs = [module.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
    for inp in inputs:
        inp.set_data_from_numpy(np.ones((1, 16), np.float32))
    return inputs


# ----------------------------------------------------------------------------------------------------
# the repository API: loading code


def test_http_load_with_code_needs_the_header(
    hc: httpclient.InferenceServerClient, tmp_path: Path
) -> None:
    marker = tmp_path / "http_mark"
    for headers in (None, {"admin-key": "wrong"}, {"admin-key": "s3cret"}):
        with pytest.raises(InferenceServerException) as info:
            hc.load_model("py_http", headers=headers, **_load_args("py_http", marker))
        assert info.value.status() == "403"
        assert info.value.message() == HTTP_REFUSAL.format("admin-key")
    assert not marker.exists() and not hc.is_model_ready("py_http")

    hc.load_model("py_http", headers={"Admin-Key": ADMIN["admin-key"]}, **_load_args("py_http", marker))
    try:
        assert marker.read_text() == "ran"
        result = hc.infer("py_http", _inputs(httpclient), headers=INFER)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 4), 3, np.float32))
    finally:
        hc.unload_model("py_http", headers=ADMIN)


def test_grpc_load_with_code_needs_the_header(gc: grpcclient.InferenceServerClient, tmp_path: Path) -> None:
    marker = tmp_path / "grpc_mark"
    # The bare key is not the gRPC header: Triton prefixes it with triton-grpc-protocol-.
    for headers in (None, ADMIN, {"triton-grpc-protocol-admin-key": "wrong"}):
        with pytest.raises(InferenceServerException) as info:
            gc.load_model("py_grpc", headers=headers, **_load_args("py_grpc", marker))
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        assert info.value.message() == GRPC_REFUSAL.format("admin-key")
    assert not marker.exists() and not gc.is_model_ready("py_grpc")

    gc.load_model("py_grpc", headers=GRPC_ADMIN, **_load_args("py_grpc", marker))
    try:
        assert marker.read_text() == "ran"
        result = gc.infer("py_grpc", _inputs(grpcclient), headers=GRPC_INFER)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 4), 3, np.float32))
    finally:
        gc.unload_model("py_grpc", headers=GRPC_ADMIN)


def test_every_repository_route_is_restricted(restricted: ServerProcess) -> None:
    with httpx.Client(base_url=restricted.base_url, trust_env=False, timeout=30) as raw:
        for method, path in [
            ("POST", "/v2/repository/index"),
            ("POST", "/v2/repository/models/add_sub/unload"),
            ("GET", "/v2/models/add_sub/traffic"),  # modelport's traffic API
            ("POST", "/v2/models/add_sub/traffic"),
            ("GET", "/v2/repository/index"),  # refused before the method is looked at, as in Triton
            ("GET", "/v2/trace/setting"),
        ]:
            answer = raw.request(method, path)
            assert answer.status_code == 403, (method, path)
            assert answer.json() == {"error": HTTP_REFUSAL.format("admin-key")}
        assert raw.post("/v2/repository/index", headers=ADMIN).status_code == 200
        assert raw.get("/v2/models/add_sub/traffic", headers=ADMIN).status_code == 200
        assert raw.get("/v2/logging").status_code == 200  # logging is not restricted here


def test_the_traffic_command_sends_the_key(restricted: ServerProcess) -> None:
    (name, value), = ADMIN.items()
    command = [sys.executable, "-m", "modelport", "traffic", "add_sub", "--url", restricted.url]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    env = {**os.environ, "ADMIN_KEY": value}
    shown = subprocess.run(
        [*command, "--header", f"{name}=@ADMIN_KEY"], capture_output=True, text=True, timeout=60, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert "ready versions: 1" in shown.stdout and value not in shown.stdout + shown.stderr


# ----------------------------------------------------------------------------------------------------
# inference under its own key


def test_http_inference_is_restricted(hc: httpclient.InferenceServerClient) -> None:
    for headers in (None, ADMIN):
        with pytest.raises(InferenceServerException) as info:
            hc.infer("add_sub", _add_sub_inputs(httpclient), headers=headers)
        assert info.value.status() == "403"
        assert info.value.message() == HTTP_REFUSAL.format("infer-key")
    result = hc.infer("add_sub", _add_sub_inputs(httpclient), headers=INFER)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2, np.float32))


def test_grpc_inference_is_restricted(gc: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        gc.infer("add_sub", _add_sub_inputs(grpcclient), headers=GRPC_ADMIN)
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert info.value.message() == GRPC_REFUSAL.format("infer-key")
    result = gc.infer("add_sub", _add_sub_inputs(grpcclient), headers=GRPC_INFER)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2, np.float32))


def test_grpc_stream_is_restricted(restricted: ServerProcess) -> None:
    request = service_pb2.ModelInferRequest(model_name="add_sub")
    with grpc.insecure_channel(restricted.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ModelStreamInfer(iter([request]), timeout=30))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == GRPC_REFUSAL.format("infer-key")


def test_grpc_stream_with_the_header(gc: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    gc.start_stream(lambda result, error: results.put((result, error)), headers=GRPC_INFER)
    try:
        gc.async_stream_infer("add_sub", _add_sub_inputs(grpcclient))
        result, error = results.get(timeout=30)
    finally:
        gc.stop_stream()
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2, np.float32))


# ----------------------------------------------------------------------------------------------------
# open categories


def test_open_apis_need_no_header(
    hc: httpclient.InferenceServerClient, gc: grpcclient.InferenceServerClient
) -> None:
    for client in (hc, gc):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("add_sub")
        assert client.get_server_metadata()
        assert client.get_model_metadata("add_sub")
        assert client.get_model_config("add_sub")
        assert client.get_inference_statistics("add_sub")
        assert client.get_system_shared_memory_status() is not None
        assert client.get_log_settings()


# ----------------------------------------------------------------------------------------------------
# startup: the warning, and bad flags


def test_no_warning_when_the_repository_api_is_restricted(restricted: ServerProcess) -> None:
    assert "model-repository API is not restricted" not in restricted.log()


def test_explicit_mode_warns_once_about_an_open_repository_api(tmp_path: Path) -> None:
    small_models.write_add_sub(tmp_path / "repo")
    args = ["--model-control-mode=explicit", "--grpc-restricted-protocol=model-repository:k=v"]
    with running_server(tmp_path / "repo", tmp_path / "server.log", args, grpc=True) as proc:
        log = proc.log()
    warnings = [line for line in log.splitlines() if "model-repository API is not restricted" in line]
    assert len(warnings) == 1, log
    (warning,) = warnings
    assert "not restricted on HTTP:" in warning and "--http-restricted-api=model-repository:" in warning
    assert "--grpc-restricted-protocol" not in warning


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--http-restricted-api=model-repository", "--http-restricted-api option format is"),
        ("--grpc-restricted-protocol=admin:k=v", "unknown restricted protocol 'admin'"),
    ],
)
def test_a_bad_flag_stops_the_start(tmp_path: Path, flag: str, message: str) -> None:
    command = [sys.executable, "-m", "modelport", "serve", "--model-repository", str(tmp_path), flag]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert message in result.stderr and flag.split("=")[0] in result.stderr
