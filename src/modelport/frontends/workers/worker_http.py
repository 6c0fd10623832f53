"""A worker's HTTP side: uvicorn on the public port with an ASGI app that forwards every request.

The body is read here under --http-max-input-size (413 as in one process, before anything is
sent on); the engine answers everything else, from routing to the last header.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

from modelport.config.settings import ServerSettings
from modelport.errors import ModelportError
from modelport.frontends.http.body import ClientDisconnected, receive_body
from modelport.frontends.http.errors import JSON, error_parts
from modelport.frontends.http.protocol import BoundedHeadProtocol
from modelport.frontends.workers.link import Kind, LinkClient, LinkError

_ENGINE_GONE = orjson.dumps({"error": "the inference engine is not reachable"})


class ForwardingApp:
    """Sends each request to the engine as one frame and writes the engine's answer."""

    def __init__(self, link: LinkClient, limit: int) -> None:
        self._link = link
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; a websocket is refused, as the engine's app has no websocket route
        headers = scope["headers"]
        try:
            length = next((v.decode("latin-1") for k, v in headers if k == b"content-length"), None)
            body = await receive_body(receive, length, self._limit)
            head = (
                scope["method"], scope["path"], scope.get("raw_path"), scope["query_string"], headers,
                scope.get("client"), scope.get("server"), scope["http_version"], scope["scheme"],
            )  # fmt: skip
            (status, answer_headers), answer = await self._link.call(Kind.HTTP, head, body)
        except ClientDisconnected:
            return
        except ModelportError as exc:
            status, answer_headers, answer = error_parts(exc)
            answer_headers.append((b"content-length", b"%d" % len(answer)))
        except LinkError:
            status, answer = 503, _ENGINE_GONE
            answer_headers = [(b"content-type", JSON), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": answer})


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT: every worker binds the port, the kernel spreads connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def http_server(link: LinkClient, settings: ServerSettings, grace_s: float) -> HttpServer:
    """uvicorn as cli/serve.py runs it in one process (protocol, keep-alive, backlog, no proxy headers)."""
    config = uvicorn.Config(
        ForwardingApp(link, settings.http_max_input_size), host=settings.http_address,
        port=settings.http_port, loop="none", http=BoundedHeadProtocol, lifespan="off", access_log=False,
        log_level="warning", proxy_headers=False, timeout_keep_alive=75, backlog=2048,
        timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]  # seconds, a float works
    )  # fmt: skip
    return HttpServer(config)
