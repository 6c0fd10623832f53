"""create_http_app: the ASGI app with its one explicit route table and error mapping."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.core.server import InferenceServer
from modelport.errors import ModelportError
from modelport.frontends.http import handlers as h
from modelport.frontends.http.errors import Headers, error_parts, internal_error_parts
from modelport.frontends.http.infer_endpoint import InferEndpoint

log = logging.getLogger(__name__)

_MODEL = "/v2/models/{model}"
_VERSIONED = "/v2/models/{model}/versions/{version:int}"
Handler = Callable[[Request], Awaitable[Response]]


def _model_routes(prefix: str) -> list[Route]:
    return [
        Route(prefix, h.model_metadata, methods=["GET"]),
        Route(prefix + "/ready", h.model_ready, methods=["GET"]),
        Route(prefix + "/config", h.model_config, methods=["GET"]),
        Route(prefix + "/stats", h.model_statistics, methods=["GET"]),
    ]


def infer_routes(endpoint: InferEndpoint) -> list[Route]:
    """The inference routes (a plain ASGI endpoint: see infer_endpoint.py)."""
    return [
        Route(_VERSIONED + "/infer", endpoint, methods=["POST"]),
        Route(_MODEL + "/infer", endpoint, methods=["POST"]),
    ]


def _shared_memory_routes(
    prefix: str, status: Handler, register: Handler, unregister: Handler
) -> list[Route]:
    return [
        Route(prefix + "/status", status, methods=["GET"]),
        Route(prefix + "/region/{region}/status", status, methods=["GET"]),
        Route(prefix + "/region/{region}/register", register, methods=["POST"]),
        Route(prefix + "/unregister", unregister, methods=["POST"]),
        Route(prefix + "/region/{region}/unregister", unregister, methods=["POST"]),
    ]


ROUTES = [
    Route("/v2/health/live", h.live, methods=["GET"]),
    Route("/v2/health/ready", h.ready, methods=["GET"]),
    Route("/v2", h.server_metadata, methods=["GET"]),
    Route("/v2/models/stats", h.model_statistics, methods=["GET"]),
    *_model_routes(_VERSIONED),
    *_model_routes(_MODEL),
    Route("/v2/repository/index", h.repository_index, methods=["POST"]),
    Route("/v2/repository/models/{model}/load", h.repository_load, methods=["POST"]),
    Route("/v2/repository/models/{model}/unload", h.repository_unload, methods=["POST"]),
    Route(_MODEL + "/traffic", h.model_traffic, methods=["GET", "POST"]),
    Route("/v2/logging", h.log_settings, methods=["GET", "POST"]),
    Route("/v2/trace/setting", h.trace_settings, methods=["GET", "POST"]),
    Route(_MODEL + "/trace/setting", h.trace_settings, methods=["GET", "POST"]),
    *_shared_memory_routes(
        "/v2/systemsharedmemory", h.system_shm_status, h.system_shm_register, h.system_shm_unregister
    ),
    *_shared_memory_routes(
        "/v2/cudasharedmemory", h.cuda_shm_status, h.cuda_shm_register, h.cuda_shm_unregister
    ),
]


async def _modelport_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelportError)
    return _raw_response(*error_parts(exc))


def _raw_response(status: int, headers: Headers, body: bytes) -> Response:
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return h.json_response({"error": exc.detail}, status=exc.status_code)


class _InternalErrors:
    """Answers an unexpected exception with a 500 `{"error": ...}` and keeps the connection open.

    (Starlette's own catch-all re-raises after responding, which makes the server drop the
    client's keep-alive connection.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("internal error handling %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                raise
            status, headers, body = internal_error_parts(exc)
            await _raw_response(status, headers, body)(scope, receive, send)


class HttpApp:
    """The HTTP/REST app: inference goes straight to its endpoint, everything else through Starlette.

    Inference requests skip the middleware stack (the endpoint answers its own errors); the same
    routes are also in Starlette's table, so any other method on an infer path gets Starlette's
    usual 405. While the startup models load only /v2/health/* answers: the port opens early so
    liveness probes pass during a long load, and other requests wait here for the load instead
    of seeing models half-loaded.
    """

    def __init__(self, app: Starlette, fast_routes: list[Route], server: InferenceServer) -> None:
        self.app = app
        self._fast_routes = fast_routes
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._server.started and not scope["path"].startswith("/v2/health"):
            await self._server.wait_started()
        if scope["method"] == "POST" and scope["path"].endswith("/infer"):
            for route in self._fast_routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_http_app(server: InferenceServer) -> HttpApp:
    """The HTTP/REST app serving `server`."""
    fast_routes = infer_routes(InferEndpoint(server))
    app = Starlette(
        routes=[*ROUTES, *fast_routes],
        exception_handlers={
            ModelportError: _modelport_error,
            HTTPException: _http_error,
        },
    )
    app.state.server = server
    app.add_middleware(_InternalErrors)
    return HttpApp(app, fast_routes, server)
