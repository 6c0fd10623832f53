"""The ASGI app driven directly (no sockets): an unexpected exception becomes a 500 and stays inside.

If the app lets the exception escape after answering (Starlette's ServerErrorMiddleware re-raises),
uvicorn closes the keep-alive connection and the client's next request on it is reset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from modelport.config.settings import ServerSettings
from modelport.frontends.http.app import create_http_app


class _ExplodingServer:
    """Just enough of InferenceServer for the health route; liveness raises a non-modelport error."""

    started = True
    settings = ServerSettings()

    def is_live(self) -> bool:
        raise RuntimeError("boom")

    async def wait_started(self) -> None:
        return None


async def _call(path: str) -> tuple[list[dict[str, Any]], BaseException | None]:
    app = create_http_app(_ExplodingServer())  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=10)
    except Exception as exc:  # what uvicorn would see
        return sent, exc
    return sent, None


async def test_unexpected_exception_is_answered_with_500() -> None:
    sent, _ = await _call("/v2/health/live")
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 500
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert "boom" in orjson.loads(body)["error"]


async def test_unexpected_exception_does_not_escape_the_app() -> None:
    _, escaped = await _call("/v2/health/live")
    if escaped is not None:
        raise escaped


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/m/infer",
        "/v2/models/m/versions/3/infer",
        "/v2/models/m/versions/007/infer",
        "/v2/models/m/versions/x/infer",
        "/v2/models/m/versions/-1/infer",
        "/v2/models/m/versions/²/infer",
        "/v2/models/m/versions//infer",
        "/v2/models//infer",
        "/v2/models/infer",
        "/v2/models/a/b/infer",
        "/v2/models/m/versions/3/x/infer",
        "/v2/models/m/infer/",
        "/v2/models/m.onnx-1_x/infer",
        "/v2/models/m/versions/3/infers",
    ],
)
def test_the_inference_path_parser_agrees_with_the_route_table(path: str) -> None:
    from starlette.routing import Match

    from modelport.frontends.http.app import infer_path_params, infer_routes

    routes = [route for _, route in infer_routes(None)]  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    expected = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            expected = child["path_params"]
            break
    assert infer_path_params(path) == expected
