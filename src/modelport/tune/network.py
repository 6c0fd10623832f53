"""`tune --measure http|grpc`: each level measured through the served frontend, from a load process.

The tuning server's own HTTP or gRPC frontend runs on its event loop, as under `modelport serve`,
listening on 127.0.0.1 on a free port; reloading the model for a trial leaves it up. The load comes
from one spawned process (netclient.py) that lives for the whole session, so what is measured
includes the codec, the sockets and the frontend, while the client does not share the server's
interpreter.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import InternalError, Unsupported
from modelport.frontends.grpc.h2 import H2GrpcServer
from modelport.frontends.http.app import create_http_app
from modelport.frontends.http.listen import HTTP_PORT_OPTIONS, UvicornServer, bind_tcp, uvicorn_server
from modelport.tune.load import input_tensors
from modelport.tune.netclient import LoadJob, client_modules_missing, drive_level
from modelport.tune.search import Level

_HOST = "127.0.0.1"
_GRACE_S = 0.5  # how long the frontend may take to write the last answers when the session ends
_START_WAIT_S = 10.0


class NetworkMeter:
    """Serves `server` over `protocol` and measures levels through it; start() before, stop() after."""

    def __init__(self, server: InferenceServer, settings: ServerSettings, protocol: str) -> None:
        self._server = server
        self._settings = settings
        self._protocol = protocol
        self._url = ""
        self._job: LoadJob | None = None
        self._http: UvicornServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: H2GrpcServer | None = None
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        """Listen on a free port and start the load process; Unsupported without the client library."""
        missing = client_modules_missing(self._protocol)
        if missing is not None:
            raise Unsupported(
                f"--measure {self._protocol} needs tritonclient[{self._protocol}] "
                f"(pip install 'tritonclient[{self._protocol}]'): {missing}"
            )
        try:
            if self._protocol == "http":
                await self._start_http()
            else:
                self._grpc = H2GrpcServer(self._server, self._settings)
                await self._grpc.start()
                self._url = f"{_HOST}:{self._grpc.port}"
        except OSError as exc:
            raise InternalError(f"the {self._protocol} frontend could not listen on {_HOST}: {exc}") from None
        # spawn, not fork: the server process runs threads (model instances, the loop's executor).
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    async def _start_http(self) -> None:
        sock = bind_tcp(_HOST, 0)
        port = int(sock.getsockname()[1])
        app = create_http_app(self._server)
        self._http = uvicorn_server(app, _HOST, port, timeout_graceful_shutdown=_GRACE_S, **HTTP_PORT_OPTIONS)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        waited_until = loop.time() + _START_WAIT_S
        while not self._http.started:
            if self._http_task.done() or loop.time() > waited_until:
                raise InternalError(f"the HTTP frontend did not start on {_HOST}:{port}")
            await asyncio.sleep(0.01)
        self._url = f"{_HOST}:{port}"

    async def stop(self) -> None:
        if self._pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        if self._grpc is not None:
            await self._grpc.stop(_GRACE_S)

    def prepare(self, spec: ModelSpec) -> None:
        inputs = tuple(input_tensors(spec))
        outputs = tuple(tensor.name for tensor in spec.outputs)
        self._job = LoadJob(self._protocol, self._url, spec.name, inputs, outputs)

    async def level(self, concurrency: int, warmup_s: float, seconds: float) -> Level:
        assert self._job is not None and self._pool is not None, "start() and prepare() come first"
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, drive_level, self._job, concurrency, warmup_s, seconds
            )
        except BrokenProcessPool:
            raise InternalError("the load process of tune ended unexpectedly") from None
