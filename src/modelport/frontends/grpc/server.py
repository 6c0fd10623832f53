"""GrpcServer: the grpc.aio server on the process's event loop, with its limits, TLS and keepalive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends.grpc.method_handlers import add_inference_service
from modelport.frontends.grpc.servicer import InferenceServicer
from modelport.frontends.restrictions import GRPC_CATEGORIES, HeaderCheck, header_checks
from modelport.protocol import service_pb2


def channel_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    """grpc core arguments from the settings (keepalive names and defaults are Triton's)."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.grpc_max_receive_message_size),
        ("grpc.max_send_message_length", settings.grpc_max_send_message_size),
        # A busy port must fail the start, not be silently shared with another process.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", settings.grpc_keepalive_time),
        ("grpc.keepalive_timeout_ms", settings.grpc_keepalive_timeout),
        ("grpc.keepalive_permit_without_calls", int(settings.grpc_keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", settings.grpc_http2_max_pings_without_data),
        (
            "grpc.http2.min_recv_ping_interval_without_data_ms",
            settings.grpc_http2_min_recv_ping_interval_without_data,
        ),
        ("grpc.http2.max_ping_strikes", settings.grpc_http2_max_ping_strikes),
    ]
    if settings.grpc_max_connection_age > 0:
        options.append(("grpc.max_connection_age_ms", settings.grpc_max_connection_age))
    if settings.grpc_max_connection_age_grace > 0:
        options.append(("grpc.max_connection_age_grace_ms", settings.grpc_max_connection_age_grace))
    return options


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the certificate files, or None for a plaintext port."""
    if not (settings.grpc_use_ssl or settings.grpc_use_ssl_mutual):
        return None
    key = Path(settings.grpc_server_key).read_bytes()
    cert = Path(settings.grpc_server_cert).read_bytes()
    root = Path(settings.grpc_root_cert).read_bytes() if settings.grpc_root_cert else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=root, require_client_auth=settings.grpc_use_ssl_mutual
    )


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_ALWAYS_ANSWERED = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)


class StartupGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Holds every call but ServerLive/ServerReady while the startup models load, as HTTP does.

    The port opens early for liveness probes; other calls wait here instead of seeing models
    half-loaded. Once the load is over this is one attribute check per call.
    """

    def __init__(self, server: InferenceServer) -> None:
        self._server = server

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not self._server.started and details.method not in _ALWAYS_ANSWERED:
            await self._server.wait_started()
        return await continuation(details)


class ProtocolRestrictions(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call of a restricted protocol without its metadata, with Triton's UNAVAILABLE.

    The check and the refusing handler of each restricted RPC are built once; an RPC of an open
    category costs one dict lookup.
    """

    def __init__(self, checks: dict[str, HeaderCheck]) -> None:
        service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
        self._restricted: dict[str, tuple[HeaderCheck, grpc.RpcMethodHandler]] = {}
        for method in service.methods:
            check = checks.get(GRPC_CATEGORIES[method.name])
            if check is not None:
                refusal = _refusal(check.grpc_message, streaming=method.client_streaming)
                self._restricted[f"/{service.full_name}/{method.name}"] = (check, refusal)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        restricted = self._restricted.get(details.method)
        if restricted is not None and not restricted[0].allows_grpc(details.invocation_metadata):
            return restricted[1]
        return await continuation(details)


def _refusal(message: str, *, streaming: bool) -> grpc.RpcMethodHandler:
    """A handler that ends the call with UNAVAILABLE `message` without reading the request."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    if streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def interceptors(server: InferenceServer, settings: ServerSettings) -> list[grpc.aio.ServerInterceptor]:
    """The restrictions (when any protocol is restricted) ahead of the startup gate."""
    checks = header_checks(settings.grpc_restricted_protocols)
    gate = StartupGate(server)
    return [ProtocolRestrictions(checks), gate] if checks else [gate]


class GrpcServer:
    """Serves GRPCInferenceService for `server`; start() binds and starts, stop() drains.

    `private_address` (a `unix:` path) serves there in plaintext instead of the public port: the
    engine's end for frontend workers' calls.
    """

    def __init__(
        self, server: InferenceServer, settings: ServerSettings, private_address: str | None = None
    ) -> None:
        self._server = server
        self._settings = settings
        self._private_address = private_address
        self._grpc: grpc.aio.Server | None = None
        self.port = settings.grpc_port

    @property
    def address(self) -> str:
        return self._private_address or listen_address(self._settings.grpc_address, self.port)

    async def start(self) -> None:
        """Bind and start serving; OSError when the address cannot be bound or TLS files are unreadable."""
        settings = self._settings
        credentials = server_credentials(settings) if self._private_address is None else None
        server = grpc.aio.server(
            options=channel_options(settings), interceptors=interceptors(self._server, settings)
        )
        add_inference_service(InferenceServicer(self._server), server)
        address = self._private_address or listen_address(settings.grpc_address, settings.grpc_port)
        try:
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind {address}: {exc}") from None
        if self.port == 0:  # older grpcio reports a failed bind this way
            raise OSError(f"cannot bind {address}")
        await server.start()
        self._grpc = server

    async def stop(self, grace: float) -> None:
        """Refuse new RPCs, give running ones `grace` seconds, then cancel what remains."""
        if self._grpc is not None:
            await self._grpc.stop(grace)
            self._grpc = None
