"""The engine's side of forwarded requests: HTTP via the ASGI app, ModelInfer via the servicer.

HTTP requests become an ASGI scope for `create_http_app(server)`, called in-process as uvicorn
would call it, so routing, restrictions, statistics and every handler behave as with no workers.
A body the app sends in parts (generate_stream's events) goes to the worker part by part.
ModelInfer runs the servicer's own path after the same restriction check and startup gate as the
gRPC interceptors apply; the worker turns the (code, details) answer into the RPC's status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from starlette.types import ASGIApp, Message

from modelport.core.server import InferenceServer
from modelport.errors import ModelportError
from modelport.frontends.grpc.errors import grpc_code, internal_message
from modelport.frontends.grpc.method_handlers import Malformed, tolerant
from modelport.frontends.grpc.servicer import InferenceServicer
from modelport.frontends.http.errors import internal_error_parts
from modelport.frontends.restrictions import HeaderCheck
from modelport.frontends.workers.link import Body
from modelport.frontends.workers.link_server import PartWriter
from modelport.protocol import service_pb2

log = logging.getLogger(__name__)

OK = 0


def status_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


class HttpBridge:
    """Runs one forwarded HTTP request through `app` and returns ((status, headers), body).

    With `part`, each body message the app sends with more_body goes out at once as a PART (the
    first with (status, headers)); the answer then carries the last one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, head: Any, body: Body, part: PartWriter | None = None) -> tuple[Any, Body]:
        method, path, raw_path, query, headers, client, server, http_version, scheme = head
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "server": server,
            "client": client,  # the client of the worker's connection
            "scheme": scheme,
            "root_path": "",
            "headers": headers,
            "state": {},
            "method": method,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
        }
        request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        del body
        answered = asyncio.get_running_loop().create_future()
        start: Message | None = None
        parts: list[bytes] = []
        streamed = False

        async def receive() -> Message:
            if request:
                return request.pop()
            await answered  # as uvicorn: a disconnect is reported once the response went out
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal start, streamed
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                if part is not None and message.get("more_body", False) and start is not None:
                    await part(None if streamed else (start["status"], list(start.get("headers", ()))),
                               message.get("body", b""))  # fmt: skip
                    streamed = True
                    return
                parts.append(message.get("body", b""))
                if not message.get("more_body", False) and not answered.done():
                    answered.set_result(None)

        try:
            await self._app(scope, receive, send)
        except Exception as exc:
            log.exception("internal error handling %s %s", method, path)
            if start is None:
                status, error_headers, error = internal_error_parts(exc)
                error_headers.append((b"content-length", b"%d" % len(error)))
                return (status, error_headers), error
        if start is None:
            status, error_headers, error = internal_error_parts(RuntimeError("no response"))
            error_headers.append((b"content-length", b"%d" % len(error)))
            return (status, error_headers), error
        answer = parts[0] if len(parts) == 1 else b"".join(parts)
        return (start["status"], list(start.get("headers", ()))), answer


class GrpcInferBridge:
    """Runs one forwarded ModelInfer call; returns ((code, details), serialized response)."""

    def __init__(
        self, server: InferenceServer, servicer: InferenceServicer, check: HeaderCheck | None
    ) -> None:
        self._server = server
        self._servicer = servicer
        self._check = check  # the inference category's restriction, if any
        self._parse = tolerant(service_pb2.ModelInferRequest.FromString)

    async def __call__(self, metadata: Any, body: Body, part: PartWriter | None = None) -> tuple[Any, Body]:
        # The order of the interceptors and the handler in frontends/grpc: restriction, startup gate,
        # parsing, the call.
        if self._check is not None and not self._check.allows_grpc(metadata):
            return (status_number(grpc.StatusCode.UNAVAILABLE), self._check.grpc_message), b""
        if not self._server.started:
            await self._server.wait_started()
        assert self._parse is not None
        msg = self._parse(body)  # type: ignore[arg-type]  # protobuf parses any bytes-like object
        del body
        if isinstance(msg, Malformed):
            return (status_number(grpc.StatusCode.INVALID_ARGUMENT), msg.message), b""
        try:
            response = await self._servicer.infer_message(msg, metadata)
        except ModelportError as exc:
            return (status_number(grpc_code(exc.code)), exc.message), b""
        except Exception as exc:
            log.exception("internal error in ModelInfer")
            return (status_number(grpc.StatusCode.INTERNAL), internal_message(exc)), b""
        return (OK, ""), response.SerializeToString()
