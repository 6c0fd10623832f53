"""InferEndpoint: POST /v2/models/{model}[/versions/{version}]/infer as a plain ASGI app.

Inference is the one hot route, so it skips Starlette's request, response and middleware layers:
the body is read straight from the ASGI messages into one buffer sized by Content-Length, and
the response goes out as two prebuilt messages. Errors are answered here with the same
`{"error": ...}` bodies and statuses as every other route.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from starlette.types import Receive, Scope, Send

from modelport.codecs import DECODE_OFF_LOOP_BYTES, json_v2
from modelport.codecs.binary import parse_header_length
from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import ModelportError
from modelport.frontends.http.body import (
    ClientDisconnected,
    choose_encoding,
    compress,
    decompress,
    receive_body,
)
from modelport.frontends.http.errors import JSON, Headers, error_parts, internal_error_parts
from modelport.shm import RequestRegions
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

_WANTED_HEADERS = frozenset(
    {
        b"content-length",
        b"content-encoding",
        b"inference-header-content-length",
        b"accept-encoding",
        b"traceparent",
    }
)
_BINARY = b"application/octet-stream"


def _decode(
    body: bytes | bytearray,
    header_length: int | None,
    spec: ModelSpec,
    version: str,
    shm: RequestRegions,
) -> InferRequest:
    if header_length == 0:
        return json_v2.decode_raw_request(body, spec, version)
    return json_v2.decode_request(body, header_length, spec.name, version, shm=shm)


class InferEndpoint:
    """Decodes an infer request, runs it through the InferenceServer, and encodes the answer."""

    def __init__(self, server: InferenceServer) -> None:
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, headers, body = await self._infer(scope, receive)
        except ClientDisconnected:
            return  # nobody to answer
        except ModelportError as exc:
            status, headers, body = error_parts(exc)
        except Exception as exc:
            log.exception("internal error handling POST %s", scope.get("path"))
            status, headers, body = internal_error_parts(exc)
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _infer(self, scope: Scope, receive: Receive) -> tuple[int, Headers, Any]:
        server = self._server
        params = scope["path_params"]
        name = params["model"]
        version = "" if params.get("version") is None else str(params["version"])
        found = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED_HEADERS}
        limit = server.settings.http_max_input_size
        raw = await receive_body(receive, found.get("content-length"), limit)
        body = decompress(raw, found.get("content-encoding"), limit)
        header_length = parse_header_length(found.get("inference-header-content-length"))
        # Resolved once, before the body is looked at (an unknown model is 404): the request is
        # decoded against the same version that runs it.
        with await server.acquire_loaded(name, version) as handle:
            regions = server.shared_memory.for_request()
            decode = partial(_decode, body, header_length, handle.spec, version, regions)
            # A large body is decoded on a worker thread: health and other requests go on meanwhile.
            request = await asyncio.to_thread(decode) if len(body) >= DECODE_OFF_LOOP_BYTES else decode()
            request.input_regions = regions
            traceparent = found.get("traceparent") if server.tracing.active else None
            response = await server.infer(request, handle, traceparent)
        payload, json_length = json_v2.encode_response(response, request)
        headers: Headers = []
        if json_length is None:
            headers.append((b"content-type", JSON))
        else:
            headers.append((b"content-type", _BINARY))
            headers.append((b"inference-header-content-length", b"%d" % json_length))
        encoding = choose_encoding(found.get("accept-encoding"))
        if encoding is not None:
            payload = compress(payload, encoding)
            headers.append((b"content-encoding", encoding.encode()))
        return 200, headers, payload
