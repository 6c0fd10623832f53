"""The built-in status page: its files (package data in `ui/`) and its one JSON endpoint.

The page (`/`, `/ui`) and its script and style are never restricted: they hold no data and ask
for the key when the JSON answers 403. The JSON (`/ui/status.json`) needs the headers of every
restricted category it shows (statistics, model-repository, model-config).
"""

from __future__ import annotations

from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.core.server import InferenceServer
from modelport.core.status import status_document
from modelport.frontends import restrictions as r

# name -> media type of each file the page is made of
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
_NO_STORE = {"cache-control": "no-store"}


class _PageFile:
    """One file of the page, read from the package once, when the app is built."""

    def __init__(self, name: str) -> None:
        self._body = resources.files(__package__).joinpath("ui").joinpath(name).read_bytes()
        self._media_type = _FILES[name]

    async def respond(self, request: Request) -> Response:
        # no-cache: after an upgrade the browser checks for the new page instead of mixing versions
        return Response(self._body, media_type=self._media_type, headers={"cache-control": "no-cache"})


async def status_json(request: Request) -> Response:
    """The page's snapshot of models, traffic and statistics (read-only, computed now)."""
    server: InferenceServer = request.app.state.server
    body = orjson.dumps(status_document(server))
    return Response(body, media_type="application/json", headers=_NO_STORE)


async def _to_page(request: Request) -> Response:
    """`/ui/` -> `/ui` by a relative Location, so a path prefix an Ingress strips survives the redirect."""
    return Response(status_code=308, headers={"location": "../ui"})


def status_page_routes() -> list[tuple[str, Route]]:
    """The page's routes with their restricted-API categories (see frontends/restrictions.py)."""
    page = _PageFile("index.html")
    return [
        (r.STATUS_PAGE, Route("/", page.respond, methods=["GET"])),
        (r.STATUS_PAGE, Route("/ui", page.respond, methods=["GET"])),
        (r.STATUS_PAGE, Route("/ui/", _to_page, methods=["GET"])),
        (r.STATUS_PAGE, Route("/ui/status.js", _PageFile("status.js").respond, methods=["GET"])),
        (r.STATUS_PAGE, Route("/ui/status.css", _PageFile("status.css").respond, methods=["GET"])),
        (r.STATUS_DATA, Route("/ui/status.json", status_json, methods=["GET"])),
    ]
