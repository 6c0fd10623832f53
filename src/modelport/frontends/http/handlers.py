"""One small handler per HTTP endpoint; each decodes, calls the InferenceServer, and encodes."""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeGuard

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelport.codecs.json_v2 import parse_json_object
from modelport.core.server import InferenceServer
from modelport.errors import InternalError, InvalidInput
from modelport.frontends.http.body import read_body

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
    await _server(request).make_resident(*_model(request))
    return json_response(_server(request).model_metadata(*_model(request)))


async def model_ready(request: Request) -> Response:
    if _server(request).is_model_ready(*_model(request)):
        return Response(status_code=200)
    return json_response({"error": "Model version not ready"}, status=400)


async def model_config(request: Request) -> Response:
    await _server(request).make_resident(*_model(request))
    return json_response(_server(request).model_config_json(*_model(request)))


async def model_statistics(request: Request) -> Response:
    name = request.path_params.get("model", "")
    version = request.path_params.get("version")
    return json_response(_server(request).model_statistics(name, "" if version is None else str(version)))


async def log_settings(request: Request) -> Response:
    server = _server(request)
    if request.method == "GET":
        return json_response(server.log_settings())
    return json_response(server.update_log_settings(await _settings_body(request)))


async def trace_settings(request: Request) -> Response:
    server = _server(request)
    model = request.path_params.get("model", "")
    if request.method == "GET":
        return json_response(server.trace_settings(model))
    return json_response(server.update_trace_settings(model, await _settings_body(request)))


async def _settings_body(request: Request) -> dict[str, Any]:
    body = await read_body(request, 1 << 20)
    return parse_json_object(body) if body.strip() else {}


async def repository_index(request: Request) -> Response:
    body = await read_body(request, 1 << 20)
    ready_only = False
    if body.strip():
        doc = parse_json_object(body)
        ready_only = bool(doc.get("ready", False))
    entries = _server(request).repository_index(ready_only)
    return json_response([e.to_json() for e in entries])


async def repository_load(request: Request) -> Response:
    server = _server(request)
    name = request.path_params["model"]
    parameters = _repository_parameters(await read_body(request, server.settings.http_max_input_size))
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        if key == "config":
            config = value if isinstance(value, str) else orjson.dumps(value).decode()
        elif key.startswith("file:") and isinstance(value, str):
            try:
                files[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"failed to load '{name}': '{key}' is not valid base64") from None
        else:
            raise InternalError("unexpected error on creating Triton parameter")
    await server.load_model(name, config, files or None)
    return Response(status_code=200)


async def repository_unload(request: Request) -> Response:
    parameters = _repository_parameters(await read_body(request, 1 << 20))
    dependents = parameters.get("unload_dependents", False)
    if not isinstance(dependents, bool):
        raise InvalidInput("'unload_dependents' must be a boolean")
    await _server(request).unload_model(request.path_params["model"], unload_dependents=dependents)
    return Response(status_code=200)


def _repository_parameters(body: bytes | bytearray) -> dict[str, Any]:
    """The `parameters` object of a repository load/unload body (the body may be empty)."""
    if not body.strip():
        return {}
    parameters = parse_json_object(body).get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    return parameters


async def model_traffic(request: Request) -> Response:
    """Beyond Triton: GET shows, POST changes how unversioned requests are split between versions."""
    server = _server(request)
    name = request.path_params["model"]
    if request.method == "GET":
        return json_response(server.model_traffic(name))
    doc = parse_json_object(await read_body(request, 1 << 20))
    return json_response(server.set_model_traffic(name, doc))


async def system_shm_status(request: Request) -> Response:
    regions = _server(request).shared_memory.system_status(request.path_params.get("region", ""))
    return json_response([r.to_json() for r in regions])


async def system_shm_register(request: Request) -> Response:
    doc = parse_json_object(await read_body(request, 1 << 20))
    key, offset, byte_size = doc.get("key"), doc.get("offset", 0), doc.get("byte_size")
    if not isinstance(key, str) or not _is_count(offset) or not _is_count(byte_size):
        raise InvalidInput(
            "system shared memory register request must have a string 'key' and non-negative integer "
            "'byte_size' (and optionally 'offset')"
        )
    _server(request).shared_memory.register_system(request.path_params["region"], key, offset, byte_size)
    return Response(status_code=200)


async def system_shm_unregister(request: Request) -> Response:
    _server(request).shared_memory.unregister_system(request.path_params.get("region", ""))
    return Response(status_code=200)


async def cuda_shm_status(request: Request) -> Response:
    regions = _server(request).shared_memory.cuda_status(request.path_params.get("region", ""))
    return json_response([r.to_json() for r in regions])


async def cuda_shm_register(request: Request) -> Response:
    doc = parse_json_object(await read_body(request, 1 << 20))
    device_id, byte_size, handle = doc.get("device_id", 0), doc.get("byte_size"), doc.get("raw_handle")
    encoded = handle.get("b64") if isinstance(handle, dict) else None
    if not isinstance(encoded, str) or not _is_count(device_id) or not _is_count(byte_size):
        raise InvalidInput(
            "cuda shared memory register request must have 'raw_handle' as {\"b64\": <base64 string>} and "
            "non-negative integer 'device_id' and 'byte_size'"
        )
    try:
        raw_handle = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise InvalidInput("cuda shared memory register request: 'raw_handle.b64' is not base64") from None
    region = request.path_params["region"]
    _server(request).shared_memory.register_cuda(region, raw_handle, device_id, byte_size)
    return Response(status_code=200)


async def cuda_shm_unregister(request: Request) -> Response:
    _server(request).shared_memory.unregister_cuda(request.path_params.get("region", ""))
    return Response(status_code=200)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
