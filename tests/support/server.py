"""Runs `python -m modelport serve` as a real subprocess on free loopback ports (HTTP, and gRPC on request).

The process is started, polled on /v2/health/live (not ready: a repository with a broken model is
live but never ready), and stopped by PID with SIGTERM. Every wait is bounded.

The server runs with ResourceWarning shown (Python hides it by default), and `running_server` fails
a server whose log reports an unclosed resource or an exception in a finalizer: warnings are errors
in the server under test too, not only in the test process.

The server may listen before its startup models have loaded (liveness holds during a long load,
and other requests wait for the load), so after liveness `start()` also waits for one ordinary
request (GET /v2) to be answered: from then on readiness reflects the loaded models.
"""

from __future__ import annotations

import contextlib
import os
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

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
SMALL_INPUT_LIMIT = 1024 * 1024  # --http-max-input-size of the healthy server
# What Python writes to stderr for a leaked socket/file/transport and for an error in __del__.
LEAK_MARKERS = ("ResourceWarning", "Exception ignored in")

# Never route loopback traffic through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """GET `url` and return its status code; None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def _frontend_workers_args() -> list[str]:
    """MODELPORT_TEST_FRONTEND_WORKERS=N runs every test server with --frontend-workers N (a check that
    worker mode behaves as one process does; tests that name the flag themselves override it)."""
    workers = os.environ.get("MODELPORT_TEST_FRONTEND_WORKERS", "")
    return ["--frontend-workers", workers] if workers else []


def _grpc_stack_args() -> list[str]:
    """MODELPORT_TEST_GRPC_STACK=h2|aio runs every test server's gRPC port on that stack (default: the
    server's own default; tests that name the flag themselves override it)."""
    stack = os.environ.get("MODELPORT_TEST_GRPC_STACK", "")
    return ["--grpc-stack", stack] if stack else []


@dataclass
class ServerProcess:
    """One `modelport serve` subprocess and where it listens."""

    repository: Path
    log_path: Path
    extra_args: Sequence[str] = ()
    grpc: bool = False  # also serve gRPC, on a free port of its own
    stop_timeout_s: float = STOP_TIMEOUT_S
    port: int = 0
    grpc_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_offset: int = field(default=0, repr=False)  # where the running process's output starts

    @property
    def url(self) -> str:
        """host:port, the form tritonclient wants."""
        return f"{HOST}:{self.port}"

    @property
    def http_url(self) -> str:
        return self.url

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelport",
            "serve",
            "--model-repository",
            str(self.repository),
            "--http-port",
            str(self.port),
            "--http-address",
            HOST,
            *self._grpc_args(),
            "--allow-metrics=false",
            *_frontend_workers_args(),
            *self.extra_args,
        ]

    def _grpc_args(self) -> list[str]:
        if not self.grpc:
            return ["--allow-grpc=false"]
        return ["--grpc-address", HOST, "--grpc-port", str(self.grpc_port), *_grpc_stack_args()]

    def start(self, attempts: int = 3, *, wait_for_models: bool = True) -> None:
        """Start and wait for liveness (and, by default, for the startup models to load).

        A port taken between probe and bind is retried.
        """
        for attempt in range(attempts):
            self.port = free_port()
            self.grpc_port = free_port() if self.grpc else 0
            self._spawn()
            if self._wait_live():
                if wait_for_models:
                    self._wait_started()
                return
            if attempt + 1 < attempts and "failed to start" in self.log():  # a port was taken meanwhile
                continue
            self.kill()
            raise RuntimeError(f"modelport did not become live on {self.url}:\n{self.log()}")
        raise AssertionError("unreachable")

    def environment(self) -> dict[str, str]:
        """Variables the process gets on top of this one's (a subclass may configure the server by them)."""
        return {}

    def _spawn(self) -> None:
        env = {**os.environ, **self.environment()}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), "always::ResourceWarning"]))
        env.pop("CUDA_VISIBLE_DEVICES", None)
        with self.log_path.open("ab") as log:
            self.log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def _wait_live(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if http_status(f"{self.base_url}/v2/health/live", timeout=1.0) == 200:
                return True
            time.sleep(0.05)
        return False

    def _wait_started(self) -> None:
        status = http_status(f"{self.base_url}/v2", timeout=START_TIMEOUT_S)
        if status != 200:
            self.kill()
            raise RuntimeError(f"modelport on {self.url} answered GET /v2 with {status}:\n{self.log()}")

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM by PID; returns the exit code (the process is killed if it overstays)."""
        assert self.process is not None
        timeout = self.stop_timeout_s if timeout is None else timeout
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"modelport (pid {self.pid}) did not exit within {timeout}s of SIGTERM:\n{self.log()}"
            ) from None

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

    def leak_reports(self) -> list[str]:
        """Lines of this process's output that report a leaked resource or an error in a finalizer."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                output = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in output.splitlines() if any(marker in line for marker in LEAK_MARKERS)]


@contextlib.contextmanager
def running_server(
    repository: Path,
    log_path: Path,
    extra_args: Sequence[str] = (),
    *,
    grpc: bool = False,
    stop_timeout_s: float = STOP_TIMEOUT_S,
) -> Iterator[ServerProcess]:
    """A started server; on exit it is stopped and must have exited 0."""
    server = ServerProcess(repository, log_path, tuple(extra_args), grpc=grpc, stop_timeout_s=stop_timeout_s)
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"modelport exited with {code} after SIGTERM:\n{server.log()}"
        assert not server.leak_reports(), f"modelport reported leaks:\n{server.log()[-6000:]}"
