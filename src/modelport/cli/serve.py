"""Runs the server: loads models, serves HTTP, stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from modelport import __version__
from modelport.backends.registry import BackendRegistry
from modelport.cli.tables import render_table
from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends.http.app import create_http_app
from modelport.repository.manager import ModelRepositoryManager

log = logging.getLogger("modelport.server")


class _HttpServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the runner owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: ServerSettings) -> int:
    """Start everything, wait for a stop signal, shut down; returns the exit code."""
    manager = ModelRepositoryManager(settings, BackendRegistry.with_builtins())
    server = InferenceServer(settings, manager)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    log.info("modelport %s starting", __version__)
    await server.start()
    print(_models_table(server), flush=True)
    print(_options_table(settings), flush=True)
    if settings.exit_on_error and not server.is_ready():
        log.error("failed to load all models")
        await server.stop()
        return 1
    try:
        http_socket = _bind(settings.http_address, settings.http_port) if settings.allow_http else None
    except OSError as exc:
        log.error("failed to start HTTP service on %s:%d: %s", settings.http_address, settings.http_port, exc)
        await server.stop()
        return 1
    http = _start_http(server, settings) if http_socket is not None else None
    if http is not None:
        http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
        log.info("Started HTTPService at %s:%d", settings.http_address, settings.http_port)
    await stop.wait()
    log.info("shutting down")
    if http is not None:
        http.should_exit = True
        await http_task
    await server.stop()
    log.info("stopped")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so that a busy port is reported here rather than inside uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _start_http(server: InferenceServer, settings: ServerSettings) -> _HttpServer:
    config = uvicorn.Config(
        create_http_app(server),
        host=settings.http_address,
        port=settings.http_port,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        backlog=2048,
        timeout_graceful_shutdown=settings.exit_timeout_secs,
    )
    return _HttpServer(config)


def _models_table(server: InferenceServer) -> str:
    rows = [
        [e.name, e.version or "-", e.state.value if e.state else "UNKNOWN", e.reason]
        for e in server.repository_index()
    ]
    rows = [r if r[3] else r[:3] + [""] for r in rows]
    return render_table(["Model", "Version", "Status", "Reason"], rows)


def _options_table(settings: ServerSettings) -> str:
    rows = [
        ["server_id", settings.server_id],
        ["server_version", __version__],
        ["model_repository_path", ", ".join(str(p) for p in settings.model_repositories)],
        ["model_control_mode", settings.model_control_mode],
        ["strict_readiness", str(settings.strict_readiness).lower()],
        ["auto_complete_config", str(settings.auto_complete_config).lower()],
        ["http", f"{settings.http_address}:{settings.http_port}" if settings.allow_http else "off"],
        ["exit_timeout", str(settings.exit_timeout_secs)],
    ]
    return render_table(["Option", "Value"], rows)
