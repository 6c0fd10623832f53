"""A frontend worker process: `python -m modelport.frontends.workers.worker <options JSON>`.

It serves the public HTTP and gRPC ports beside the other workers and hands every request to the
engine. SIGTERM (from the engine's supervisor) stops it gracefully: it stops listening and
finishes what is in flight. When the engine goes, the worker goes at once with exit code 1, so
nothing keeps the ports: its link drops, and the kernel kills it (PR_SET_PDEATHSIG) anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import grpc

from modelport.frontends.grpc.server import listen_address
from modelport.frontends.http.listen import UvicornServer, bind_tcp
from modelport.frontends.workers.link import Kind, LinkClient, connect
from modelport.frontends.workers.options import WorkerOptions
from modelport.frontends.workers.worker_grpc import ForwardingService, engine_channel, start_grpc
from modelport.frontends.workers.worker_http import http_server
from modelport.observability.logging import configure_logging

log = logging.getLogger("modelport.worker")

PR_SET_PDEATHSIG = 1
MAX_ANSWER_BYTES = 2**48  # the engine's answers are as large as they are (as in one process)
ENGINE_LOST_EXIT = 1
BIND_FAILED_EXIT = 3


def die_with_engine(engine_pid: int) -> None:
    """Have the kernel kill this process when the engine ends (Linux); exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != engine_pid:
        raise SystemExit(ENGINE_LOST_EXIT)


class _Frontends:
    """The worker's listening servers, started in order and stopped together."""

    def __init__(self) -> None:
        self.http: UvicornServer | None = None
        self.http_task: asyncio.Task[None] | None = None
        self.grpc: grpc.aio.Server | None = None
        self.channel: grpc.aio.Channel | None = None

    async def start(self, link: LinkClient, options: WorkerOptions) -> int:
        """0 once listening; BIND_FAILED_EXIT (logged with the one-process messages) when a port is taken."""
        settings = options.settings
        if settings.allow_http:
            try:
                sock = bind_tcp(settings.http_address, settings.http_port, reuse_port=True)
            except OSError as exc:
                host, port = settings.http_address, settings.http_port
                log.error("failed to start HTTP service on %s:%d: %s", host, port, exc)
                return BIND_FAILED_EXIT
            self.http = http_server(link, settings, options.grace_s)
            self.http_task = asyncio.create_task(self.http.serve(sockets=[sock]))
            while not self.http.started and not self.http_task.done():
                await asyncio.sleep(0.005)
            if not self.http.started:  # uvicorn gave up (it logged why)
                return BIND_FAILED_EXIT
        if settings.allow_grpc:
            self.channel = engine_channel(options.engine_grpc, settings)
            try:
                self.grpc = await start_grpc(ForwardingService(link, self.channel), settings)
            except OSError as exc:
                address = listen_address(settings.grpc_address, settings.grpc_port)
                log.error("failed to start GRPC service on %s: %s", address, exc)
                return BIND_FAILED_EXIT
        return 0

    async def stop(self, grace_s: float) -> None:
        grpc_stop = asyncio.create_task(self.grpc.stop(grace_s)) if self.grpc is not None else None
        if self.http is not None and self.http_task is not None:
            self.http.should_exit = True
            await self.http_task
        if grpc_stop is not None:
            await grpc_stop
        if self.channel is not None:
            await self.channel.close()


async def serve_worker(options: WorkerOptions) -> int:
    """Serve until SIGTERM (exit code 0) or until the engine goes (exit at once)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # a terminal's Ctrl-C: the engine decides
    try:
        link = await connect(options.link_path, MAX_ANSWER_BYTES)
    except OSError as exc:
        log.error("frontend worker %d cannot reach the engine: %s", options.index, exc)
        return ENGINE_LOST_EXIT
    frontends = _Frontends()
    try:
        code = await frontends.start(link, options)
        if code:
            await frontends.stop(0)
            return code
        link.send(0, Kind.HELLO, (options.index, os.getpid()))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((stopping, link.lost), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if link.lost.done():
            log.error("frontend worker %d: the engine closed its link; exiting", options.index)
            os._exit(ENGINE_LOST_EXIT)  # at once: nothing here can answer without the engine
        await frontends.stop(options.grace_s)
        return 0
    finally:
        link.close()
        await link.lost


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def main(argv: Sequence[str]) -> int:
    options = WorkerOptions.from_json(argv[1])
    die_with_engine(options.engine_pid)
    logs = configure_logging(options.settings)
    try:
        return _run(serve_worker(options))
    finally:
        logs.close()


if __name__ == "__main__":
    code = main(sys.argv)
    # Everything is closed by now; the interpreter's own teardown (grpc's included) would hold the
    # engine's shutdown a few hundred milliseconds longer for nothing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
