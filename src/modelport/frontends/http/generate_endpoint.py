"""GenerateEndpoint: Triton's generate extension, POST /v2/models/{model}[/versions/{version}]/generate
and .../generate_stream, as a plain ASGI app.

/generate answers one JSON object; the model must send exactly one response (decoupled models
included). /generate_stream answers Server-Sent Events, one `data: {...}` event per response:
the status is the first response's (200, or the error's), and an error after that is an event
of its own. Errors before the request runs are `{"error": ...}` JSON answers. A client that goes
away cancels its request: a decoupled model sees is_cancelled(), a queued request leaves its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from starlette.types import Receive, Scope, Send

from modelport.codecs import DECODE_OFF_LOOP_BYTES, generate
from modelport.core.server import InferenceServer
from modelport.core.streaming import StreamItem
from modelport.errors import InvalidInput, ModelportError
from modelport.frontends.http.body import ClientDisconnected, receive_body
from modelport.frontends.http.disconnect import unless_disconnected
from modelport.frontends.http.errors import JSON, Headers, error_parts, internal_error_parts
from modelport.frontends.status import http_status

log = logging.getLogger(__name__)

EVENT_STREAM = b"text/event-stream; charset=utf-8"
_WANTED_HEADERS = frozenset({b"content-length", b"content-encoding"})


class GenerateEndpoint:
    """One of the two generate routes: `streaming` answers Server-Sent Events."""

    def __init__(self, server: InferenceServer, streaming: bool) -> None:
        self._server = server
        self._streaming = streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _Answer(send)
        try:
            await self._generate(scope, receive, answer)
        except ClientDisconnected:
            log.debug("client went away during POST %s; its request is cancelled", scope.get("path"))
        except ModelportError as exc:
            await answer.fail(*error_parts(exc))
        except Exception as exc:
            log.exception("internal error handling POST %s", scope.get("path"))
            await answer.fail(*internal_error_parts(exc))

    async def _generate(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        server = self._server
        params = scope["path_params"]
        version = "" if params.get("version") is None else str(params["version"])
        found = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED_HEADERS}
        limit = server.settings.http_max_input_size
        body = await receive_body(receive, found.get(b"content-length"), limit)
        with await server.acquire_loaded(params["model"], version) as handle:
            if found.get(b"content-encoding", "identity").strip().lower() not in ("", "identity"):
                raise InvalidInput("Unsupported content-encoding, only 'identity' is supported.")
            decode = partial(generate.decode_request, body, handle.spec, version, limit)
            request = await asyncio.to_thread(decode) if len(body) >= DECODE_OFF_LOOP_BYTES else decode()
            del decode, body
            items = server.infer_stream(request, handle=handle)
            async with contextlib.aclosing(items):
                respond = _events(items, answer) if self._streaming else _single(items, answer)
                await unless_disconnected(receive, respond)


async def _single(items: AsyncIterator[StreamItem], answer: _Answer) -> None:
    """/generate: the one response, after the model's last."""
    first: Any = None
    count = 0
    async for result, _ in items:
        count += 1
        if count == 1:
            first = result
    if count != 1:
        raise InvalidInput(generate.NOT_ONE_RESPONSE)
    if isinstance(first, ModelportError):
        raise first
    await answer.whole(200, [(b"content-type", JSON)], generate.encode_response(first))


async def _events(items: AsyncIterator[StreamItem], answer: _Answer) -> None:
    """/generate_stream: an event per response as it comes, then the end of the body."""
    async for result, _ in items:
        status = 200
        try:
            if isinstance(result, ModelportError):
                raise result
            payload = generate.encode_response(result)
        except ModelportError as exc:
            status, payload = http_status(exc.code), generate.encode_error(exc.message)
        await answer.event(status, generate.sse_event(payload))
    await answer.end()


class _Answer:
    """The response of one generate request: whole, or as events after a status chosen by the first."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._started = False
        self._ended = False

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self._started = self._ended = True
        headers.append((b"content-length", b"%d" % len(body)))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def event(self, status: int, data: bytes) -> None:
        if not self._started:
            self._started = True
            headers = [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache")]
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        if not self._started:  # no response at all: an empty stream
            await self.event(200, b"")
        self._ended = True
        await self._send({"type": "http.response.body", "body": b""})

    async def fail(self, status: int, headers: Headers, body: bytes) -> None:
        """An error: the JSON answer before anything went out, else a last event."""
        if not self._started:
            await self.whole(status, headers, body)
            return
        if self._ended:
            return
        await self.event(status, generate.sse_event(body))
        await self.end()
