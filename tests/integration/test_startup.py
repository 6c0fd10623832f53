"""While the startup models load: health answers at once, every other call waits for the load.

A Python model whose initialize() takes a few seconds holds the startup load; calls made meanwhile
over HTTP and gRPC must see the loaded model, not a half-loaded repository.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from support.server import ServerProcess

LOAD_S = 3.0

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

MODEL = f"""
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep({LOAD_S})

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "INPUT0")]) for r in requests
        ]
"""


@pytest.fixture
def loading_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, float]]:
    """A server that has just become live and is still loading `slow_init`; and when it went live."""
    model = tmp_path / "models" / "slow_init"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    (model / "1" / "model.py").write_text(textwrap.dedent(MODEL))
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log", grpc=True)
    server.start(wait_for_models=False)
    live_at = time.monotonic()
    try:
        yield server, live_at
    finally:
        assert server.stop() == 0, server.log()
        assert not server.leak_reports(), server.log()


def test_calls_made_during_the_startup_load_wait_for_it(loading_server: tuple[ServerProcess, float]) -> None:
    server, live_at = loading_server
    with (
        httpclient.InferenceServerClient(server.http_url, network_timeout=30) as http,
        grpcclient.InferenceServerClient(server.grpc_url) as grpc,
    ):
        assert http.is_server_live() and grpc.is_server_live()
        assert not http.is_server_ready() and not grpc.is_server_ready()
        assert time.monotonic() - live_at < LOAD_S / 2, "the health checks should not have waited"
        with ThreadPoolExecutor(1) as pool:  # gRPC from a thread; the HTTP client stays on this one (gevent)
            over_grpc = pool.submit(grpc.get_model_metadata, "slow_init")
            assert http.get_model_metadata("slow_init")["name"] == "slow_init"
            assert over_grpc.result(timeout=30).name == "slow_init"
        assert http.is_server_ready() and grpc.is_server_ready()
