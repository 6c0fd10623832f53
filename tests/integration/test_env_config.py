"""A server configured by MODELPORT_* environment variables alone (repository, ports, addresses, the models
to load), the command line winning over the environment, and a bad value refused with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from support.models import small_models, write_model
from support.server import HOST, ServerProcess, free_port, http_status

CONFIG = """name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
"""
MODELS = {"one": 1.0, "two": 2.0, "three": 3.0}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("env_repo")
    for name, constant in MODELS.items():
        write_model(root, name, small_models.make_add_constant_model(constant, 4), CONFIG.format(name=name))
    return root


class EnvServer(ServerProcess):
    """`modelport serve` with `args` only; everything else from the environment."""

    args: tuple[str, ...] = ()
    port_flag: bool = False  # the command line names the HTTP port, the environment a decoy
    decoy_port: int = 0

    def command(self) -> list[str]:
        port = ("--http-port", str(self.port)) if self.port_flag else ()
        return [sys.executable, "-m", "modelport", "serve", *port, *self.args]

    def environment(self) -> dict[str, str]:
        self.decoy_port = free_port()
        http_port = self.decoy_port if self.port_flag else self.port
        return {
            "MODELPORT_MODEL_REPOSITORY": str(self.repository),
            "MODELPORT_HTTP_ADDRESS": HOST,
            "MODELPORT_HTTP_PORT": str(http_port),
            "MODELPORT_GRPC_ADDRESS": HOST,
            "MODELPORT_GRPC_PORT": str(self.grpc_port),
            "MODELPORT_ALLOW_METRICS": "false",
            "MODELPORT_MODEL_CONTROL_MODE": "explicit",
            "MODELPORT_LOAD_MODEL": "one;three",
        }


def _started(repo: Path, log: Path, args: tuple[str, ...] = (), port_flag: bool = False) -> EnvServer:
    server = EnvServer(repo, log, grpc=True)
    server.args, server.port_flag = args, port_flag
    server.start()
    return server


@pytest.fixture
def env_only(repo: Path, tmp_path: Path) -> Iterator[EnvServer]:
    server = _started(repo, tmp_path / "env.log")
    yield server
    assert server.stop() == 0, server.log()


def _ready_models(url: str) -> set[str]:
    with httpclient.InferenceServerClient(url) as client:
        return {m["name"] for m in client.get_model_repository_index() if m.get("state") == "READY"}


def test_a_server_configured_by_the_environment_alone(env_only: EnvServer) -> None:
    assert env_only.command()[4:] == []  # nothing on the command line after `serve`
    assert _ready_models(env_only.http_url) == {"one", "three"}  # ';' separated the two models
    data = np.ones((1, 4), dtype=np.float32)
    with grpcclient.InferenceServerClient(env_only.grpc_url) as client:
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(data)
        np.testing.assert_array_equal(client.infer("three", [tensor]).as_numpy("OUTPUT0"), data + 3)


def test_the_command_line_wins_and_replaces_repeated_values(repo: Path, tmp_path: Path) -> None:
    server = _started(repo, tmp_path / "flags.log", ("--load-model", "two"), port_flag=True)
    try:
        assert server.decoy_port != server.port
        assert http_status(f"{server.base_url}/v2/health/live") == 200
        assert http_status(f"http://{HOST}:{server.decoy_port}/v2/health/live") is None
        assert _ready_models(server.http_url) == {"two"}  # not added to the environment's one;three
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MODELPORT_HTTP_PORT", "eighty", "environment variable MODELPORT_HTTP_PORT: invalid int value"),
        ("MODELPORT_MODEL_CONTROL_MODE", "sometimes", "environment variable MODELPORT_MODEL_CONTROL_MODE: "
                                                      "invalid choice (choose from none, poll, explicit)"),
        ("MODELPORT_ALLOW_GRPC", "perhaps", "environment variable MODELPORT_ALLOW_GRPC: expected a boolean"),
        ("MODELPORT_MODEL_REPOSITORY", "/no/such/folder",
         "is not a folder (set by environment variable MODELPORT_MODEL_REPOSITORY)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_variable(
    repo: Path, variable: str, value: str, message: str
) -> None:
    env = {**os.environ, "MODELPORT_MODEL_REPOSITORY": str(repo), variable: value}
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--allow-metrics=false"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
