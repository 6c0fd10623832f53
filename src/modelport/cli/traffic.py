"""`modelport traffic <model> ...`: show or change how a running server splits a model's traffic.

It calls the server's traffic endpoint (GET/POST /v2/models/{model}/traffic) over HTTP; nothing
is unloaded or reloaded, so a pin (rollback) takes effect on the very next request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from modelport.errors import InvalidInput
from modelport.repository.routing import parse_version_number, parse_weights


def add_traffic_parser(commands: Any) -> None:
    traffic = commands.add_parser(
        "traffic",
        help="show or set a model's traffic split between versions, pin (roll back) or unpin",
        description="Without options, shows the model's current traffic policy.",
    )
    traffic.add_argument("model", help="model name")
    traffic.add_argument(
        "-u", "--url", default="127.0.0.1:8000", help="server HTTP address (host:port or URL)"
    )
    traffic.add_argument("--split", metavar="V:W,...", help="weights by version, e.g. 1:90,2:10")
    traffic.add_argument(
        "--pin", metavar="VERSION", help="send every unversioned request to VERSION (rollback)"
    )
    traffic.add_argument("--unpin", action="store_true", help="remove the pin set through the API")
    traffic.add_argument(
        "--clear", action="store_true", help="remove every API setting (the config's parameters apply again)"
    )
    traffic.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    traffic.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="send this header (repeatable), e.g. the key of a restricted model-repository API; "
        "NAME=@ENV takes the value from the environment variable ENV",
    )


def run_traffic(args: argparse.Namespace) -> int:
    try:
        body = _request_body(args)
        headers = _headers(args.header)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    base = args.url if "://" in args.url else f"http://{args.url}"
    url = f"{base.rstrip('/')}/v2/models/{urllib.parse.quote(args.model, safe='')}/traffic"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=args.timeout) as response:
            doc = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        print(f"error: HTTP {exc.code}: {_error_text(exc.read())}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    print(_describe(doc))
    return 0


def _request_body(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.clear:
        return {"weights": None, "pin": None}
    body: dict[str, Any] = {}
    if args.split is not None:
        body["weights"] = {str(v): w for v, w in parse_weights(args.split).items()}
    if args.pin is not None and args.unpin:
        raise InvalidInput("--pin and --unpin exclude each other")
    if args.pin is not None:
        body["pin"] = str(parse_version_number(args.pin, "--pin"))
    if args.unpin:
        body["pin"] = None
    return body or None


def _headers(items: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs; a value '@ENV' is read from the environment (so no key is in the shell history)."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--header expects NAME=VALUE, got '{item}'")
        if value.startswith("@"):
            if value[1:] not in os.environ:
                raise InvalidInput(f"--header {name}: the environment variable {value[1:]} is not set")
            value = os.environ[value[1:]]
        headers[name.strip()] = value
    return headers


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")


def _describe(doc: dict[str, Any]) -> str:
    weights = doc.get("weights") or {}
    split = ", ".join(f"v{v}: {w}" for v, w in weights.items()) or "none (newest READY version)"
    lines = [
        f"model:          {doc.get('name')}",
        f"ready versions: {', '.join(doc.get('ready_versions', [])) or '-'}",
        f"pinned to:      {doc.get('pin') or '-'}",
        f"split:          {split}",
        f"set by:         {doc.get('source')}",
    ]
    return "\n".join(lines)
