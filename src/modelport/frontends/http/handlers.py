"""One small handler per HTTP endpoint; each decodes, calls the InferenceServer, and encodes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelport.codecs import json_v2
from modelport.codecs.binary import parse_header_length
from modelport.core.server import InferenceServer
from modelport.errors import InvalidInput
from modelport.frontends.http.body import choose_encoding, compress, decompress, read_body

_EMPTY_OK = Response(status_code=200)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _server(request: Request) -> InferenceServer:
    server: InferenceServer = request.app.state.server
    return server


def _model(request: Request) -> tuple[str, str]:
    version = request.path_params.get("version")
    return request.path_params["model"], "" if version is None else str(version)


async def live(request: Request) -> Response:
    return Response(status_code=200 if _server(request).is_live() else 400)


async def ready(request: Request) -> Response:
    return Response(status_code=200 if _server(request).is_ready() else 400)


async def server_metadata(request: Request) -> Response:
    return json_response(_server(request).server_metadata())


async def model_metadata(request: Request) -> Response:
    return json_response(_server(request).model_metadata(*_model(request)))


async def model_ready(request: Request) -> Response:
    if _server(request).is_model_ready(*_model(request)):
        return Response(status_code=200)
    return json_response({"error": "Model version not ready"}, status=400)


async def model_config(request: Request) -> Response:
    return json_response(_server(request).model_config_json(*_model(request)))


async def model_statistics(request: Request) -> Response:
    name = request.path_params.get("model", "")
    version = request.path_params.get("version")
    return json_response(_server(request).model_statistics(name, "" if version is None else str(version)))


async def infer(request: Request) -> Response:
    server = _server(request)
    name, version = _model(request)
    limit = server.settings.http_max_input_size
    body = decompress(await read_body(request, limit), request.headers.get("content-encoding"), limit)
    header_length = parse_header_length(request.headers.get("inference-header-content-length"))
    infer_request = json_v2.decode_request(body, header_length, name, version)
    response = await server.infer(infer_request)
    payload, json_length = json_v2.encode_response(response, infer_request)
    headers: dict[str, str] = {}
    media_type = "application/json"
    if json_length is not None:
        headers["Inference-Header-Content-Length"] = str(json_length)
        media_type = "application/octet-stream"
    encoding = choose_encoding(request.headers.get("accept-encoding"))
    if encoding is not None:
        payload = compress(payload, encoding)
        headers["Content-Encoding"] = encoding
    return Response(payload, headers=headers, media_type=media_type)


async def repository_index(request: Request) -> Response:
    body = await read_body(request, 1 << 20)
    ready_only = False
    if body.strip():
        doc = _json_object(body)
        ready_only = bool(doc.get("ready", False))
    entries = _server(request).repository_index(ready_only)
    return json_response([e.to_json() for e in entries])


async def repository_load(request: Request) -> Response:
    await _server(request).load_model(request.path_params["model"])
    return Response(status_code=200)


async def repository_unload(request: Request) -> Response:
    await _server(request).unload_model(request.path_params["model"])
    return Response(status_code=200)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("failed to parse the request JSON buffer: expected a JSON object")
    return doc
