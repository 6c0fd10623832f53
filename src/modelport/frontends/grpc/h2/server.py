"""H2GrpcServer: GRPCInferenceService on the `h2` library, with the same start/stop/address as
GrpcServer (grpc.aio), so the CLI picks either by --grpc-stack.

The port is an asyncio server of GrpcConnection protocols; TLS is an ssl.SSLContext that offers
ALPN "h2" (and checks client certificates for mutual TLS), built from the same flags.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends.grpc.h2.connection import GrpcConnection
from modelport.frontends.grpc.h2.options import h2_options
from modelport.frontends.grpc.h2.service import Service
from modelport.frontends.grpc.server import listen_address

log = logging.getLogger(__name__)

# After the grace, how long cancelled calls' connections get to close before they are cut.
_CLOSE_WAIT_S = 1.0
_BACKLOG = 2048


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS context from the certificate flags, or None for a plaintext port."""
    if not (settings.grpc_use_ssl or settings.grpc_use_ssl_mutual):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 needs TLS 1.2 or later
    context.load_cert_chain(settings.grpc_server_cert, settings.grpc_server_key)
    context.set_alpn_protocols(["h2"])
    if settings.grpc_use_ssl_mutual:  # as grpc: without mutual TLS no client certificate is asked for
        context.load_verify_locations(settings.grpc_root_cert)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class H2GrpcServer:
    """Serves GRPCInferenceService for `server` over HTTP/2 with h2; start() binds, stop() drains."""

    def __init__(self, server: InferenceServer, settings: ServerSettings) -> None:
        self._server = server
        self._settings = settings
        self._listener: asyncio.Server | None = None
        self._connections: set[GrpcConnection] = set()
        self.port = settings.grpc_port

    @property
    def address(self) -> str:
        return listen_address(self._settings.grpc_address, self.port)

    async def start(self) -> None:
        """Bind and start serving; OSError when the address cannot be bound or TLS files are unreadable."""
        settings = self._settings
        service = Service(self._server, settings)
        options = h2_options(settings)
        context = tls_context(settings)
        connections = self._connections

        def connection() -> GrpcConnection:
            return GrpcConnection(service, options, connections)

        loop = asyncio.get_running_loop()
        host = settings.grpc_address.strip("[]") or None
        try:
            self._listener = await loop.create_server(
                connection, host, settings.grpc_port, ssl=context, backlog=_BACKLOG
            )
        except OSError as exc:
            raise OSError(f"cannot bind {self.address}: {exc}") from None
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Refuse new calls (GOAWAY), give running ones `grace` seconds, then cancel what remains."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        await asyncio.sleep(0)  # connections accepted just before are made, and drained too
        connections = list(self._connections)
        for conn in connections:
            conn.drain()
        await _wait_closed(connections, grace)
        for conn in connections:
            if not conn.closed.done():
                conn.abort()
        if not await _wait_closed(connections, _CLOSE_WAIT_S):
            for conn in connections:
                conn.force_close()
            await _wait_closed(connections, _CLOSE_WAIT_S)
        await listener.wait_closed()


async def _wait_closed(connections: list[GrpcConnection], timeout: float) -> bool:
    """Whether every connection closed within `timeout` seconds."""
    pending = [conn.closed for conn in connections if not conn.closed.done()]
    if not pending:
        return True
    _, still_open = await asyncio.wait(pending, timeout=timeout)
    return not still_open
