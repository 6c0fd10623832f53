"""The server as a process: body size cap, startup failures, and a clean stop on SIGTERM."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as httpclient

from support.assertions import expect_error
from support.server import HOST, SMALL_INPUT_LIMIT, free_port, http_status, running_server


class TestMaxInputSize:
    """healthy_server runs with --http-max-input-size=1 MiB."""

    def test_body_over_the_limit_is_413(self, healthy_raw: httpx.Client) -> None:
        response = healthy_raw.post("/v2/models/add_sub/infer", content=b"x" * (SMALL_INPUT_LIMIT + 1))
        assert response.status_code == 413
        assert "exceeds the limit of 1048576 bytes" in response.json()["error"]

    def test_chunked_body_over_the_limit_is_413(self, healthy_raw: httpx.Client) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(24):
                yield b"y" * 65536

        response = healthy_raw.post("/v2/models/add_sub/infer", content=chunks())
        assert response.status_code == 413

    def test_decompressed_body_over_the_limit_is_413(self, healthy_raw: httpx.Client) -> None:
        bomb = gzip.compress(b"{" + b" " * (2 * SMALL_INPUT_LIMIT) + b"}")
        assert len(bomb) < SMALL_INPUT_LIMIT
        response = healthy_raw.post(
            "/v2/models/add_sub/infer", content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert response.status_code == 413

    def test_tritonclient_sees_413(self, healthy_client: httpclient.InferenceServerClient) -> None:
        big = httpclient.InferInput("INPUT0", [1, 1], "BYTES")
        big.set_data_from_numpy(np.array([[b"z" * (SMALL_INPUT_LIMIT + 10)]], dtype=np.object_))
        expect_error(lambda: healthy_client.infer("string_identity", [big]), 413, "--http-max-input-size")

    def test_body_under_the_limit_is_served_and_the_server_lives_on(
        self, healthy_client: httpclient.InferenceServerClient
    ) -> None:
        value = b"q" * (SMALL_INPUT_LIMIT // 2)
        inp = httpclient.InferInput("INPUT0", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[value]], dtype=np.object_))
        assert healthy_client.infer("string_identity", [inp]).as_numpy("OUTPUT0")[0, 0] == value
        assert healthy_client.is_server_ready() is True


def _run_to_exit(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class TestStartup:
    def test_exit_on_error_with_a_broken_model(self, model_repository: Path) -> None:
        result = _run_to_exit(
            [
                "--model-repository",
                str(model_repository),
                "--http-port",
                str(free_port()),
                "--http-address",
                HOST,
                "--allow-grpc=false",
                "--allow-metrics=false",
                "--exit-on-error=true",
            ]
        )
        assert result.returncode != 0
        assert "failed to load all models" in result.stderr + result.stdout

    def test_missing_repository(self, tmp_path: Path) -> None:
        result = _run_to_exit(["--model-repository", str(tmp_path / "nope"), "--http-port", str(free_port())])
        assert result.returncode != 0
        assert "is not a folder" in result.stderr

    def test_load_model_without_explicit_mode(self, healthy_repository: Path) -> None:
        result = _run_to_exit(["--model-repository", str(healthy_repository), "--load-model", "add_sub"])
        assert result.returncode != 0
        assert (
            "Use of '--load-model' requires setting '--model-control-mode=explicit' as well." in result.stderr
        )

    def test_busy_port(self, healthy_repository: Path) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind((HOST, 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = _run_to_exit(
                [
                    "--model-repository",
                    str(healthy_repository),
                    "--http-port",
                    str(port),
                    "--http-address",
                    HOST,
                    "--allow-grpc=false",
                    "--allow-metrics=false",
                ]
            )
        assert result.returncode == 1
        assert "failed to start HTTP service" in result.stderr


def test_sigterm_stops_cleanly(healthy_repository: Path, tmp_path: Path) -> None:
    with running_server(healthy_repository, tmp_path / "server.log") as server:
        with httpclient.InferenceServerClient(server.url, network_timeout=30) as client:
            assert client.is_server_ready() is True
            inp = httpclient.InferInput("INPUT0", [1, 1], "BYTES")
            inp.set_data_from_numpy(np.array([[b"bye"]], dtype=np.object_))
            assert client.infer("string_identity", [inp]).as_numpy("OUTPUT0")[0, 0] == b"bye"
        process = server
    # running_server asserted exit code 0 on SIGTERM; the port is closed afterwards.
    assert http_status(f"{process.base_url}/v2/health/live", timeout=1.0) is None
    assert "stopped" in process.log()
