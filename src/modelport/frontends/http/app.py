"""create_http_app: the ASGI app with its one explicit route table and error mapping."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.core.server import InferenceServer
from modelport.errors import ModelportError
from modelport.frontends import restrictions as r
from modelport.frontends.http import handlers as h
from modelport.frontends.http.errors import JSON, Headers, error_parts, internal_error_parts
from modelport.frontends.http.generate_endpoint import GenerateEndpoint
from modelport.frontends.http.infer_endpoint import InferEndpoint
from modelport.frontends.http.status_page import status_page_routes
from modelport.frontends.restrictions import HeaderCheck, HttpCheck, header_checks, route_check

log = logging.getLogger(__name__)

_MODEL = "/v2/models/{model}"
_VERSIONED = "/v2/models/{model}/versions/{version:int}"
_REPOSITORY_MODEL = "/v2/repository/models/{model}"
Handler = Callable[[Request], Awaitable[Response]]


Table = list[tuple[str, Route]]  # (restricted-API category, route), in matching order


def _model_routes(prefix: str) -> Table:
    return [
        (r.METADATA, Route(prefix, h.model_metadata, methods=["GET"])),
        (r.HEALTH, Route(prefix + "/ready", h.model_ready, methods=["GET"])),
        (r.MODEL_CONFIG, Route(prefix + "/config", h.model_config, methods=["GET"])),
        (r.STATISTICS, Route(prefix + "/stats", h.model_statistics, methods=["GET"])),
    ]


def infer_routes(endpoint: InferEndpoint) -> Table:
    """The inference routes (a plain ASGI endpoint: see infer_endpoint.py)."""
    return [
        (r.INFERENCE, Route(_VERSIONED + "/infer", endpoint, methods=["POST"])),
        (r.INFERENCE, Route(_MODEL + "/infer", endpoint, methods=["POST"])),
    ]


def generate_routes(server: InferenceServer) -> Table:
    """Triton's generate extension: one JSON answer, or Server-Sent Events (generate_endpoint.py)."""
    whole, stream = GenerateEndpoint(server, streaming=False), GenerateEndpoint(server, streaming=True)
    return [
        (r.INFERENCE, Route(_VERSIONED + "/generate", whole, methods=["POST"])),
        (r.INFERENCE, Route(_MODEL + "/generate", whole, methods=["POST"])),
        (r.INFERENCE, Route(_VERSIONED + "/generate_stream", stream, methods=["POST"])),
        (r.INFERENCE, Route(_MODEL + "/generate_stream", stream, methods=["POST"])),
    ]


def _shared_memory_routes(prefix: str, status: Handler, register: Handler, unregister: Handler) -> Table:
    return [
        (r.SHARED_MEMORY, Route(prefix + "/status", status, methods=["GET"])),
        (r.SHARED_MEMORY, Route(prefix + "/region/{region}/status", status, methods=["GET"])),
        (r.SHARED_MEMORY, Route(prefix + "/region/{region}/register", register, methods=["POST"])),
        (r.SHARED_MEMORY, Route(prefix + "/unregister", unregister, methods=["POST"])),
        (r.SHARED_MEMORY, Route(prefix + "/region/{region}/unregister", unregister, methods=["POST"])),
    ]


# Every route but inference, with its category (Triton's, and model-repository for modelport's traffic API).
ROUTES: Table = [
    (r.HEALTH, Route("/v2/health/live", h.live, methods=["GET"])),
    (r.HEALTH, Route("/v2/health/ready", h.ready, methods=["GET"])),
    (r.METADATA, Route("/v2", h.server_metadata, methods=["GET"])),
    (r.STATISTICS, Route("/v2/models/stats", h.model_statistics, methods=["GET"])),
    *_model_routes(_VERSIONED),
    *_model_routes(_MODEL),
    (r.MODEL_REPOSITORY, Route("/v2/repository/index", h.repository_index, methods=["POST"])),
    (r.MODEL_REPOSITORY, Route(_REPOSITORY_MODEL + "/load", h.repository_load, methods=["POST"])),
    (r.MODEL_REPOSITORY, Route(_REPOSITORY_MODEL + "/unload", h.repository_unload, methods=["POST"])),
    (r.MODEL_REPOSITORY, Route(_MODEL + "/traffic", h.model_traffic, methods=["GET", "POST"])),
    (r.LOGGING, Route("/v2/logging", h.log_settings, methods=["GET", "POST"])),
    (r.TRACE, Route("/v2/trace/setting", h.trace_settings, methods=["GET", "POST"])),
    (r.TRACE, Route(_MODEL + "/trace/setting", h.trace_settings, methods=["GET", "POST"])),
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


class _RouteChecks:
    """The header check of each route in the table (None where its category is open)."""

    def __init__(self, table: Table, checks: dict[str, HeaderCheck]) -> None:
        self._routes = [(route, route_check(category, checks)) for category, route in table]

    def check_for(self, scope: Scope) -> HttpCheck | None:
        # The first route whose path matches decides, whatever the method: Triton refuses a restricted
        # API before it looks at the method.
        for route, check in self._routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return check
        return None


class HttpApp:
    """The HTTP/REST app: inference goes straight to its endpoint, everything else through Starlette.

    Inference requests skip the middleware stack (the endpoint answers its own errors); the same
    routes are also in Starlette's table, so any other method on an infer path gets Starlette's
    usual 405. A request to a restricted API without its header is refused here first, with 403.
    While the startup models load only /v2/health/* answers: the port opens early so liveness
    probes pass during a long load, and other requests wait here for the load instead of seeing
    models half-loaded.
    """

    def __init__(
        self,
        app: Starlette,
        fast_routes: list[tuple[Route, HeaderCheck | None]],
        server: InferenceServer,
        route_checks: _RouteChecks | None = None,
    ) -> None:
        self.app = app
        self._fast_routes = fast_routes
        self._server = server
        self._route_checks = route_checks  # None: no API is restricted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fast: Route | None = None
        check: HttpCheck | None = None
        if scope["method"] == "POST" and scope["path"].endswith("/infer"):
            fast, check, child_scope = self._infer_route(scope)
        if fast is None and self._route_checks is not None:
            check = self._route_checks.check_for(scope)
        if check is not None and not check.allows_http(scope["headers"]):
            body = orjson.dumps({"error": check.http_message})
            await _raw_response(403, [(b"content-type", JSON)], body)(scope, receive, send)
            return
        if not self._server.started and not scope["path"].startswith("/v2/health"):
            await self._server.wait_started()
        if fast is not None:
            scope.update(child_scope)
            await fast.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


    def _infer_route(self, scope: Scope) -> tuple[Route | None, HeaderCheck | None, Scope]:
        """The inference route `scope` goes to, its header check and its path parameters."""
        params = None if scope.get("root_path") else infer_path_params(scope["path"])
        if params is not None:  # the common case, matched without the routes' regular expressions
            route, check = self._fast_routes[0 if "version" in params else 1]
            return route, check, {"endpoint": route.endpoint, "path_params": params}
        for route, check in self._fast_routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, check, child_scope
        return None, None, {}


def infer_path_params(path: str) -> dict[str, Any] | None:
    """The path parameters of `/v2/models/{model}[/versions/{version:int}]/infer`, as the routes
    would match them, or None for any other path."""
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return {"model": parts[0]}
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2].isascii() and parts[2].isdigit():
        return {"model": parts[0], "version": int(parts[2])}
    return None


def create_http_app(server: InferenceServer) -> HttpApp:
    """The HTTP/REST app serving `server`, with its restricted APIs from the settings."""
    fast_table = infer_routes(InferEndpoint(server))
    table = [*ROUTES, *generate_routes(server), *fast_table, *status_page_routes()]
    app = Starlette(
        routes=[route for _, route in table],
        exception_handlers={
            ModelportError: _modelport_error,
            HTTPException: _http_error,
        },
    )
    app.state.server = server
    app.add_middleware(_InternalErrors)
    checks = header_checks(server.settings.http_restricted_apis)
    fast_routes = [(route, checks.get(category)) for category, route in fast_table]
    return HttpApp(app, fast_routes, server, _RouteChecks(table, checks) if checks else None)
