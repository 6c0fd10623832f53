"""A `modelport serve` subprocess with gRPC and HTTP on free loopback ports, and the repository it serves.

The process is polled on HTTP /v2/health/ready (the frontends listen before the models load; the
repositories here have no broken model, so ready means every model loaded) and stopped by PID with
SIGTERM. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.models import (
    NUMERIC_TYPES,
    small_models,
    write_classifier,
    write_identity,
    write_nobatch,
)

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[2]
MOBILENET = ROOT / "examples" / "model_repository" / "mobilenet_v2"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def mobilenet_available() -> bool:
    return (MOBILENET / "1" / "model.onnx").is_file() and (MOBILENET / "config.pbtxt").is_file()


def build_grpc_repository(repo: Path, with_mobilenet: bool = False) -> Path:
    """Every model that loads: the examples' small models, identity per datatype, a labelled classifier."""
    repo.mkdir(parents=True, exist_ok=True)
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    small_models.write_add_versions(repo)
    small_models.write_simple_noconfig(repo)
    for datatype in NUMERIC_TYPES:
        write_identity(repo, datatype)
    write_classifier(repo)
    write_nobatch(repo)
    if with_mobilenet and mobilenet_available():
        shutil.copytree(MOBILENET, repo / "mobilenet_v2")
    return repo


def _http_ok(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class GrpcServerProcess:
    """One `modelport serve` subprocess serving HTTP and gRPC on 127.0.0.1."""

    repository: Path
    log_path: Path
    extra_args: Sequence[str] = ()
    http_port: int = 0
    grpc_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "modelport", "serve",
            "--model-repository", str(self.repository),
            "--http-address", HOST, "--http-port", str(self.http_port),
            "--grpc-address", HOST, "--grpc-port", str(self.grpc_port),
            "--allow-metrics=false",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.http_port, self.grpc_port = free_port(), free_port()
            self._spawn()
            if self._wait_ready():
                return
            self.kill()
            if attempt + 1 < attempts and "failed to start" in self.log():
                continue  # a port was taken between the probe and the bind
            raise RuntimeError(f"modelport did not become ready:\n{self.log()}")

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("CUDA_VISIBLE_DEVICES", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _http_ok(f"http://{self.http_url}/v2/health/ready"):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        """SIGTERM by PID; the exit code (the process is killed if it overstays)."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"modelport did not exit within {STOP_TIMEOUT_S}s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def running_grpc_server(
    repository: Path, log_path: Path, extra_args: Sequence[str] = ()
) -> Iterator[GrpcServerProcess]:
    """A started server; on exit it is stopped by PID and must have exited 0."""
    server = GrpcServerProcess(repository, log_path, tuple(extra_args))
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"modelport exited with {code} after SIGTERM:\n{server.log()}"
