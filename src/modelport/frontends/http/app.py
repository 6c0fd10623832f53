"""create_http_app: the ASGI app with its one explicit route table and error mapping."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.core.server import InferenceServer
from modelport.errors import ModelportError, Unsupported
from modelport.frontends.http import handlers as h
from modelport.frontends.http.body import BodyTooLarge
from modelport.frontends.status import http_status

log = logging.getLogger(__name__)

_MODEL = "/v2/models/{model}"
_VERSIONED = "/v2/models/{model}/versions/{version:int}"


def _model_routes(prefix: str) -> list[Route]:
    return [
        Route(prefix, h.model_metadata, methods=["GET"]),
        Route(prefix + "/ready", h.model_ready, methods=["GET"]),
        Route(prefix + "/config", h.model_config, methods=["GET"]),
        Route(prefix + "/infer", h.infer, methods=["POST"]),
        Route(prefix + "/stats", h.model_statistics, methods=["GET"]),
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
]


async def _modelport_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelportError)
    status = 413 if isinstance(exc, BodyTooLarge) else http_status(exc.code)
    headers = {"Accept-Encoding": "gzip, deflate"} if isinstance(exc, Unsupported) else None
    response = h.json_response({"error": exc.message}, status=status)
    if headers:
        response.headers.update(headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return h.json_response({"error": exc.detail}, status=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error handling %s %s", request.method, request.url.path)
    return h.json_response({"error": f"internal server error: {type(exc).__name__}: {exc}"}, status=500)


def create_http_app(server: InferenceServer) -> Starlette:
    """The HTTP/REST app serving `server`."""
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            ModelportError: _modelport_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.server = server
    return app
