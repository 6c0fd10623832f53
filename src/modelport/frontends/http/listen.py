"""The HTTP ports as the server and its frontend workers open them: sockets and uvicorn servers.

A socket is bound here, before uvicorn starts, so that a busy port is reported by the caller;
uvicorn runs on the caller's loop and leaves signals to it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from modelport.frontends.http.protocol import BoundedHeadProtocol

# The inference port's connection settings (the metrics port keeps uvicorn's).
HTTP_PORT_OPTIONS: dict[str, Any] = {"timeout_keep_alive": 75, "backlog": 2048}


class UvicornServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the runner owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket; with `reuse_port`, several processes bind the same port (SO_REUSEPORT)
    and the kernel spreads the connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, host: str, port: int, **options: Any) -> UvicornServer:
    """An ASGI server on the running loop: httptools with the head bound, no lifespan, no access
    log, no proxy headers (nothing reads client addresses)."""
    config = uvicorn.Config(
        app, host=host, port=port, loop="none", http=BoundedHeadProtocol, lifespan="off",
        access_log=False, log_level="warning", proxy_headers=False, **options,
    )  # fmt: skip
    return UvicornServer(config)
