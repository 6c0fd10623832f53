"""A worker's HTTP side: uvicorn on the public port with an ASGI app that forwards every request.

The body is read here under --http-max-input-size (413 as in one process, before anything is
sent on); the engine answers everything else, from routing to the last header.
"""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from modelport.config.settings import ServerSettings
from modelport.errors import ModelportError
from modelport.frontends.http.body import ClientDisconnected, receive_body
from modelport.frontends.http.errors import JSON, error_parts
from modelport.frontends.http.listen import HTTP_PORT_OPTIONS, UvicornServer, uvicorn_server
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


def http_server(link: LinkClient, settings: ServerSettings, grace_s: float) -> UvicornServer:
    """uvicorn as the server runs it in one process, with the app that forwards to the engine."""
    app = ForwardingApp(link, settings.http_max_input_size)
    return uvicorn_server(
        app, settings.http_address, settings.http_port, timeout_graceful_shutdown=grace_s, **HTTP_PORT_OPTIONS
    )
