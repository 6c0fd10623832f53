"""The `tritonserver` command, installed from its companion distribution (deploy/tritonserver-compat), started
with the container command line of docs/triton-compat.md, serves inferences to tritonclient over HTTP and
gRPC and exposes metrics; the Triton flag it ignores is one warning, never an exit."""

from __future__ import annotations

import shutil
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
from support.triton_manifest import container_command, manifests, with_values

COMPAT = Path(__file__).resolve().parents[2] / "deploy" / "tritonserver-compat"
CONFIG = """name: "add_one" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


@pytest.fixture(scope="module")
def tritonserver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console script pip installs from the companion distribution (built here, no index)."""
    pytest.importorskip("setuptools", reason="building the companion wheel offline needs setuptools")
    scratch = tmp_path_factory.mktemp("compat")
    source = shutil.copytree(COMPAT, scratch / "source")  # the build writes beside the sources
    options = ["--disable-pip-version-check", "--quiet", "--no-deps", "--no-index"]
    dist, site = scratch / "dist", scratch / "site"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", *options, "--no-build-isolation", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    (wheel,) = dist.glob("modelport_tritonserver_compat-*.whl")
    subprocess.run([*pip, "install", *options, "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return site / "bin" / "tritonserver"


class TritonCommand(ServerProcess):
    """The server started as the manifest's container, with free ports and a test repository."""

    script: Path = Path()
    metrics_port: int = 0

    def command(self) -> list[str]:
        self.metrics_port = free_port()
        command, *args = container_command(manifests()["modelport"])
        assert command == "tritonserver"
        ports = {"--http-port": self.port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        values = {"--model-repository": str(self.repository), **{k: str(v) for k, v in ports.items()}}
        addresses = [f"--{kind}-address={HOST}" for kind in ("http", "grpc", "metrics")]
        return [str(self.script), *with_values(args, values), *addresses]


@pytest.fixture(scope="module")
def server(tritonserver: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonCommand]:
    repo = tmp_path_factory.mktemp("triton_repo")
    write_model(repo, "add_one", small_models.make_add_constant_model(1.0, 4), CONFIG)
    process = TritonCommand(repo, tmp_path_factory.mktemp("logs") / "tritonserver.log", grpc=True)
    process.script = tritonserver
    process.start()
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log()


def test_the_installed_command_is_the_console_script(tritonserver: Path) -> None:
    assert tritonserver.is_file()
    assert "modelport.cli.tritonserver" in tritonserver.read_text()


def test_serves_over_http_and_grpc(server: TritonCommand) -> None:
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.is_server_ready() and client.is_model_ready("add_one")
        tensor = httpclient.InferInput("INPUT0", [2, 4], "FP32")
        tensor.set_data_from_numpy(data)
        np.testing.assert_array_equal(client.infer("add_one", [tensor]).as_numpy("OUTPUT0"), data + 1)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
        tensor.set_data_from_numpy(data)
        np.testing.assert_array_equal(client.infer("add_one", [tensor]).as_numpy("OUTPUT0"), data + 1)


def test_metrics_on_the_manifests_metrics_port(server: TritonCommand) -> None:
    assert http_status(f"http://{HOST}:{server.metrics_port}/metrics") == 200


def test_the_triton_flags_it_does_not_implement_are_warnings(server: TritonCommand) -> None:
    log = server.log()
    warning = "tritonserver flag --pinned-memory-pool-byte-size is not supported by modelport and is ignored"
    assert log.count(warning) == 1
    assert log.count("--strict-model-config is deprecated") == 1
