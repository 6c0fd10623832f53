"""WorkerFrontends: the engine's side of `--frontend-workers N` (link, private gRPC server, supervisor).

The worker processes own the public HTTP and gRPC ports (each binds them with SO_REUSEPORT; the
kernel spreads connections) and hand every request to this process, which keeps the models:
HTTP requests and ModelInfer calls over the link, every other RPC to a gRPC server of this
process on a Unix socket. Both sockets live in a private folder (mode 0700) removed at stop.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends import restrictions
from modelport.frontends.grpc import GrpcServer, InferenceServicer
from modelport.frontends.http.app import create_http_app
from modelport.frontends.workers.bridge import GrpcInferBridge, HttpBridge
from modelport.frontends.workers.link import Kind
from modelport.frontends.workers.link_server import Handler, LinkServer
from modelport.frontends.workers.options import WorkerOptions
from modelport.frontends.workers.supervisor import Supervisor, WorkerStartError

log = logging.getLogger("modelport.server")

WORKER_START_TIMEOUT_S = 60.0
FOLDER_PREFIX = "modelport-workers-"
WORKER_MODULE = "modelport.frontends.workers.worker"


class WorkerFrontends:
    """start() opens the private sockets and starts the workers; stop() stops the workers, then those."""

    def __init__(self, server: InferenceServer, settings: ServerSettings, grace_s: float) -> None:
        self._server = server
        self._settings = settings
        self._grace_s = grace_s  # what each worker gives its requests in flight when it stops
        self._folder: Path | None = None
        self._link: LinkServer | None = None
        self._grpc: GrpcServer | None = None
        self._supervisor: Supervisor | None = None

    @property
    def pids(self) -> list[int]:
        return self._supervisor.pids if self._supervisor is not None else []

    async def start(self) -> None:
        """WorkerStartError when a worker cannot start (it logged why); nothing is left running then."""
        settings = self._settings
        remove_stale_folders()
        # Mode 0700: ours alone. Named after this process, so that a later engine can tell it is stale.
        self._folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        handlers: dict[int, Handler] = {}
        max_body = 0
        engine_grpc = ""
        if settings.allow_http:
            handlers[Kind.HTTP] = HttpBridge(create_http_app(self._server))
            max_body = settings.http_max_input_size
        if settings.allow_grpc:
            check = restrictions.header_checks(settings.grpc_restricted_protocols).get(restrictions.INFERENCE)
            servicer = InferenceServicer(self._server)
            handlers[Kind.GRPC_INFER] = GrpcInferBridge(self._server, servicer, check)
            max_body = max(max_body, settings.grpc_max_receive_message_size)
            engine_grpc = f"unix:{self._folder / 'grpc.sock'}"
            self._grpc = GrpcServer(self._server, settings, private_address=engine_grpc)
            await self._grpc.start()
        link_path = str(self._folder / "link.sock")
        self._link = LinkServer(handlers, max_body)
        await self._link.start(link_path)

        def command(index: int) -> list[str]:
            options = WorkerOptions(index, os.getpid(), link_path, engine_grpc, settings, self._grace_s)
            return [sys.executable, "-m", WORKER_MODULE, options.to_json()]

        self._supervisor = Supervisor(settings.frontend_workers, command)
        self._link.on_hello = self._supervisor.hello
        try:
            await self._supervisor.start(WORKER_START_TIMEOUT_S)
        except WorkerStartError:
            await self._close()
            raise

    async def stop(self) -> None:
        """The workers stop listening and finish their requests within the grace; then the link closes."""
        if self._supervisor is not None:
            await self._supervisor.stop(self._grace_s)
        await self._close()

    async def _close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None
        if self._grpc is not None:
            await self._grpc.stop(0)
            self._grpc = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def remove_stale_folders() -> None:
    """Remove the private folders of engines that were killed (they could not remove their own)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # a live process of another user: not ours to judge
