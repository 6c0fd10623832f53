"""A worker's HTTP side: uvicorn on the public port with an ASGI app that forwards every request.

The body is read here under --http-max-input-size (413 as in one process, before anything is
sent on); the engine answers everything else, from routing to the last header. The answers of
the generate routes are relayed part by part as the engine streams them, and a client that goes
away cancels its request in the engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from modelport.config.settings import ServerSettings
from modelport.errors import ModelportError
from modelport.frontends.http.body import ClientDisconnected, receive_body
from modelport.frontends.http.disconnect import unless_disconnected
from modelport.frontends.http.errors import JSON, error_parts
from modelport.frontends.http.listen import HTTP_PORT_OPTIONS, UvicornServer, uvicorn_server
from modelport.frontends.workers.link import Body, Kind, LinkClient, LinkError

_ENGINE_GONE = orjson.dumps({"error": "the inference engine is not reachable"})
_STREAMED = ("/generate", "/generate_stream")  # paths whose answers are relayed as they come


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
            if scope["path"].endswith(_STREAMED):
                await unless_disconnected(receive, self._relay(head, body, send))
                return
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

    async def _relay(self, head: Any, body: Body, send: Send) -> None:
        """Forward a request and write each part of its answer as the engine sends it."""
        parts: asyncio.Queue[tuple[Any, Body] | asyncio.Future[tuple[Any, Body]]] = asyncio.Queue()

        def on_part(part_head: Any, chunk: Body) -> None:
            parts.put_nowait((part_head, chunk))

        call = asyncio.ensure_future(self._link.call(Kind.HTTP, head, body, on_part=on_part))
        call.add_done_callback(parts.put_nowait)  # the answer comes after every part
        del body
        started = False
        try:
            while not isinstance(item := await parts.get(), asyncio.Future):
                part_head, chunk = item
                if not started:
                    started = True
                    status, headers = part_head
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if item.cancelled() or item.exception() is not None:
                if not started:  # the link went down before any answer
                    headers = [(b"content-type", JSON), (b"content-length", b"%d" % len(_ENGINE_GONE))]
                    await send({"type": "http.response.start", "status": 503, "headers": headers})
                    await send({"type": "http.response.body", "body": _ENGINE_GONE})
                else:
                    await send({"type": "http.response.body", "body": b""})
                return
            (status, headers), chunk = item.result()
            if not started:
                await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": chunk})
        finally:
            call.cancel()  # still waiting: the client went away, and the engine is told


def http_server(link: LinkClient, settings: ServerSettings, grace_s: float) -> UvicornServer:
    """uvicorn as the server runs it in one process, with the app that forwards to the engine."""
    app = ForwardingApp(link, settings.http_max_input_size)
    return uvicorn_server(
        app, settings.http_address, settings.http_port, timeout_graceful_shutdown=grace_s, **HTTP_PORT_OPTIONS
    )
