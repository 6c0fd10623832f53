"""Runs the server: loads models, serves HTTP, stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass

from modelport import __version__
from modelport.cli.rate_limit_flags import rate_limit_rows
from modelport.cli.tables import render_table
from modelport.clock import Deadline
from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends.grpc import GrpcServer
from modelport.frontends.grpc.h2 import H2GrpcServer
from modelport.frontends.grpc.server import listen_address
from modelport.frontends.http.app import create_http_app
from modelport.frontends.http.listen import HTTP_PORT_OPTIONS, UvicornServer, bind_tcp, uvicorn_server
from modelport.frontends.workers.engine import WorkerFrontends
from modelport.frontends.workers.supervisor import WorkerStartError
from modelport.observability.logging import LogController
from modelport.observability.metrics import MetricsApp, MetricsOptions, create_metrics_registry
from modelport.observability.model_state_metrics import ModelStateCollector
from modelport.observability.nvml import NvmlReader
from modelport.observability.residency_metrics import ResidencyCollector
from modelport.repository.lifecycle import UNLOADED
from modelport.repository.poller import RepositoryPoller
from modelport.repository.residency import EVICTED, LOAD_SECONDS_BOUNDS

log = logging.getLogger("modelport.server")

# After the models stopped, how long the frontends may take to write the last answers.
_FRONTEND_GRACE_S = 0.5


async def serve(settings: ServerSettings, logs: LogController | None = None) -> int:
    """Start everything, wait for a stop signal, shut down; returns the exit code.

    The frontends listen before the models load, so liveness holds during a long load (readiness
    waits for the models). On SIGTERM/SIGINT readiness turns false and new inference is refused
    with UNAVAILABLE while queued and running requests finish, for up to --exit-timeout-secs (a
    second signal cuts every wait short); then the models are unloaded (what still runs gets an
    error) and the frontends stop.
    """
    server = InferenceServer(settings, log_controller=logs)
    stop = asyncio.Event()
    force = asyncio.Event()
    _install_signal_handlers(stop, force)
    log.info("modelport %s starting", __version__)
    try:
        http_socket = bind_tcp(settings.http_address, settings.http_port) if settings.allow_http else None
    except OSError as exc:
        log.error("failed to start HTTP service on %s:%d: %s", settings.http_address, settings.http_port, exc)
        return 1
    metrics_address = settings.metrics_address or settings.http_address
    try:
        metrics_socket = bind_tcp(metrics_address, settings.metrics_port) if settings.allow_metrics else None
    except OSError as exc:
        log.error("failed to start Metrics service on %s:%d: %s", metrics_address, settings.metrics_port, exc)
        if http_socket is not None:
            http_socket.close()
        return 1
    workers = settings.frontend_workers > 0
    grpc_server = _grpc_server(server, settings) if settings.allow_grpc and not workers else None
    if grpc_server is not None:
        try:
            await grpc_server.start()
        except OSError as exc:
            log.error("failed to start GRPC service on %s: %s", grpc_server.address, exc)
            if http_socket is not None:
                http_socket.close()
            if metrics_socket is not None:
                metrics_socket.close()
            return 1
        log.info("Started GRPCInferenceService at %s", grpc_server.address)
    frontends = _Frontends(grpc=grpc_server)
    if workers:
        if not await _start_workers(server, settings, frontends, http_socket):
            if metrics_socket is not None:
                metrics_socket.close()
            return 1
    elif http_socket is not None:
        frontends.http = _start_http(server, settings)
        frontends.http_task = asyncio.create_task(frontends.http.serve(sockets=[http_socket]))
        log.info("Started HTTPService at %s:%d", settings.http_address, settings.http_port)
    if metrics_socket is not None:
        frontends.metrics = _start_metrics(server, settings)
        frontends.metrics_task = asyncio.create_task(frontends.metrics.serve(sockets=[metrics_socket]))
        log.info("Started Metrics Service at %s:%d", metrics_address, settings.metrics_port)
    try:
        return await _serve_models(server, settings, frontends, stop, force)
    except BaseException:
        await frontends.stop(_FRONTEND_GRACE_S)  # nothing is left listening when the startup fails
        raise


async def _serve_models(
    server: InferenceServer,
    settings: ServerSettings,
    frontends: _Frontends,
    stop: asyncio.Event,
    force: asyncio.Event,
) -> int:
    """Load the models, serve until a stop signal, then shut down within one deadline."""
    poller = (
        RepositoryPoller(server.repository, settings.repository_poll_secs)
        if settings.model_control_mode == "poll"
        else None
    )
    if poller is not None:
        await poller.prime()
    await server.start()
    print(_models_table(server), flush=True)
    print(_options_table(settings), flush=True)
    if settings.exit_on_error and not server.is_ready():
        log.error("failed to load all models")
        server.begin_shutdown()
        await server.stop(Deadline(0, force))
        await frontends.stop(_FRONTEND_GRACE_S)
        return 1
    if poller is not None:
        poller.start()
    await stop.wait()
    deadline = Deadline(settings.exit_timeout_secs, force)  # one bound for the whole shutdown
    server.begin_shutdown()
    log.info(
        "shutting down: refusing new inference; waiting up to %.0fs for %d request(s) in flight",
        settings.exit_timeout_secs, server.inflight,
    )
    if poller is not None:
        await poller.stop()
    left = await server.drain(deadline)
    if left:
        log.warning("%d request(s) still in flight after the exit timeout; stopping anyway", left)
    # The models stop first: requests still running at the deadline are failed there, so the
    # frontends write those answers in the short grace that follows instead of dropping them.
    await server.stop(deadline)
    await frontends.stop(_FRONTEND_GRACE_S)
    log.info("stopped")
    return 0


@dataclass(slots=True)
class _Frontends:
    """The listening frontends, stopped together."""

    grpc: GrpcServer | H2GrpcServer | None = None
    workers: WorkerFrontends | None = None  # --frontend-workers: they hold the HTTP and gRPC ports
    http: UvicornServer | None = None
    http_task: asyncio.Task[None] | None = None
    metrics: UvicornServer | None = None
    metrics_task: asyncio.Task[None] | None = None

    async def stop(self, grace_s: float) -> None:
        grpc_stop = asyncio.create_task(self.grpc.stop(grace_s)) if self.grpc is not None else None
        workers_stop = asyncio.create_task(self.workers.stop()) if self.workers is not None else None
        for server, task in ((self.http, self.http_task), (self.metrics, self.metrics_task)):
            if server is not None and task is not None:
                server.should_exit = True
                await task
        if grpc_stop is not None:
            await grpc_stop
        if workers_stop is not None:
            await workers_stop


async def _start_workers(
    server: InferenceServer,
    settings: ServerSettings,
    frontends: _Frontends,
    http_socket: socket.socket | None,
) -> bool:
    """--frontend-workers N: worker processes serve the public ports (checked free here, as without
    workers) and hand every request to this process. False when they cannot start (logged)."""
    if http_socket is not None:
        http_socket.close()  # each worker binds the port itself, with SO_REUSEPORT
    grpc_address = listen_address(settings.grpc_address, settings.grpc_port)
    if settings.allow_grpc:
        try:
            bind_tcp(settings.grpc_address, settings.grpc_port).close()
        except OSError as exc:
            log.error("failed to start GRPC service on %s: %s", grpc_address, exc)
            return False
    workers = WorkerFrontends(server, settings, _FRONTEND_GRACE_S)
    try:
        await workers.start()
    except WorkerStartError as exc:
        log.error("%s", exc)
        return False
    frontends.workers = workers
    if settings.allow_grpc:
        log.info("Started GRPCInferenceService at %s", grpc_address)
    if settings.allow_http:
        log.info("Started HTTPService at %s:%d", settings.http_address, settings.http_port)
    return True


def _grpc_server(server: InferenceServer, settings: ServerSettings) -> GrpcServer | H2GrpcServer:
    return H2GrpcServer(server, settings) if settings.grpc_stack == "h2" else GrpcServer(server, settings)


def _start_metrics(server: InferenceServer, settings: ServerSettings) -> UvicornServer:
    """The Prometheus endpoint: its own registry, read from the models' statistics at scrape time."""
    options = MetricsOptions(
        counter_latencies=settings.metrics_counter_latencies,
        histograms=settings.metrics_histograms,
        cpu_metrics=settings.allow_cpu_metrics,
        gpu_metrics=settings.allow_gpu_metrics,
        metrics_interval_s=settings.metrics_interval_ms / 1000.0,
    )
    gpus = NvmlReader.open() if settings.allow_gpu_metrics else None
    registry = create_metrics_registry(server.served_models, options, cache=server.response_cache, gpus=gpus)
    host = settings.metrics_address or settings.http_address
    registry.register(ModelStateCollector(lambda: _model_states(server)))
    if settings.load_on_demand or settings.model_memory_budget is not None:
        registry.register(ResidencyCollector(server.repository.residency, LOAD_SECONDS_BOUNDS))
    return uvicorn_server(MetricsApp(registry), host, settings.metrics_port)


def _model_states(server: InferenceServer) -> list[tuple[str, str, str]]:
    """(model, version, state) of every version loading, serving or failed, for modelport_model_state.

    Versions unloaded on purpose (or evicted for the memory budget) and models never asked to load are
    left out: nothing is wrong with them.
    """
    return [
        (row.name, row.version, row.state.value)
        for row in server.repository_index()
        if row.state is not None and row.reason not in (UNLOADED, EVICTED)
    ]


def _install_signal_handlers(stop: asyncio.Event, force: asyncio.Event) -> None:
    """The first signal starts a graceful shutdown; a second one stops waiting for requests."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


def _start_http(server: InferenceServer, settings: ServerSettings) -> UvicornServer:
    return uvicorn_server(
        create_http_app(server),
        settings.http_address,
        settings.http_port,
        timeout_graceful_shutdown=_FRONTEND_GRACE_S,
        **HTTP_PORT_OPTIONS,
    )


def _models_table(server: InferenceServer) -> str:
    rows = [
        [e.name, e.version or "-", e.state.value if e.state else "UNKNOWN", e.reason]
        for e in server.repository_index()
    ]
    return render_table(["Model", "Version", "Status", "Reason"], rows)


def _options_table(settings: ServerSettings) -> str:
    rows = [
        ["server_id", settings.server_id],
        ["server_version", __version__],
        ["model_repository_path", ", ".join(_shown_roots(settings))],
        ["model_control_mode", settings.model_control_mode],
        ["strict_readiness", str(settings.strict_readiness).lower()],
        ["auto_complete_config", str(settings.auto_complete_config).lower()],
        ["model_config_name", settings.model_config_name],
        ["http", f"{settings.http_address}:{settings.http_port}" if settings.allow_http else "off"],
        ["grpc", f"{settings.grpc_address}:{settings.grpc_port}" if settings.allow_grpc else "off"],
        ["metrics", f"{settings.metrics_address or settings.http_address}:{settings.metrics_port}"
                    if settings.allow_metrics else "off"],
        ["grpc_tls", "mutual" if settings.grpc_use_ssl_mutual else str(settings.grpc_use_ssl).lower()],
        ["grpc_stack", "aio" if settings.frontend_workers else settings.grpc_stack],
        ["exit_timeout", str(settings.exit_timeout_secs)],
        ["frontend_workers", str(settings.frontend_workers)],
        *rate_limit_rows(settings),
        ["load_on_demand", str(settings.load_on_demand).lower()],
        ["model_memory_budget", str(settings.model_memory_budget or "-")],
        ["model_memory_accounting", settings.model_memory_accounting],
    ]
    return render_table(["Option", "Value"], rows)


def _shown_roots(settings: ServerSettings) -> list[str]:
    """Each root as the operator gave it: a remote one by its URL, not its mirror folder."""
    urls = {remote.cache_root: remote.location.url for remote in settings.remote_repositories}
    return [urls.get(root, str(root)) for root in settings.model_repositories]
