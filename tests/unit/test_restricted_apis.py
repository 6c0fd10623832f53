"""Restricted APIs without sockets: flag parsing, the category tables, the header check, the warning."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.cli.restricted_flags import parse_grpc_restricted_protocols, parse_http_restricted_apis
from modelport.config.settings import RESTRICTED_CATEGORIES, Restriction, ServerSettings
from modelport.frontends.http.app import ROUTES, create_http_app
from modelport.frontends.restrictions import GRPC_CATEGORIES, HeaderCheck, unrestricted_repository_warning
from modelport.protocol import service_pb2


def _settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


# ----------------------------------------------------------------------------------------------------
# flags


def test_groups_with_their_own_keys() -> None:
    parsed = parse_http_restricted_apis(
        ["model-repository,trace,logging:admin-key=a:b=c", "inference:infer-key=x"]
    )
    assert dict(parsed) == {
        "model-repository": Restriction("admin-key", "a:b=c"),  # the value is everything after the first '='
        "trace": Restriction("admin-key", "a:b=c"),
        "logging": Restriction("admin-key", "a:b=c"),
        "inference": Restriction("infer-key", "x"),
    }


def test_grpc_headers_get_tritons_prefix() -> None:
    parsed = parse_grpc_restricted_protocols(["health:k=v"])
    assert parsed["health"] == Restriction("triton-grpc-protocol-k", "v")


def test_every_category_is_accepted() -> None:
    assert set(parse_http_restricted_apis([",".join(RESTRICTED_CATEGORIES) + ":k=v"])) == set(
        RESTRICTED_CATEGORIES
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["model-repository"], "--http-restricted-api option format is '<config name>:<setting>=<value>'. "
                               "Got model-repository"),
        (["model-repository:k"], "option format is"),
        (["model-repository:k="], "option format is"),
        ([":k=v"], "option format is"),
        (["model-repository:=v"], "option format is"),
        (["models:k=v"], "unknown restricted api 'models'"),
        (["health,,metadata:k=v"], "unknown restricted api ''"),
        (["trace:k=v", "logging,trace:j=w"], "restricted api 'trace' can not be specified in multiple"),
        (["trace,trace:k=v"], "can not be specified in multiple config groups"),
        (["trace:bad key=v"], "'bad key' is not a valid header name"),
    ],
)  # fmt: skip
def test_malformed_values_are_refused(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError, match="--http-restricted-api") as info:
        parse_http_restricted_apis(entries)
    assert message in str(info.value)


def test_cli_builds_frozen_settings(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        "--http-restricted-api=model-repository:admin=1",
        "--http-restricted-api=inference:user=2",
        "--grpc-restricted-protocol=model-repository,inference:admin=1",
    )
    assert dict(s.http_restricted_apis) == {
        "model-repository": Restriction("admin", "1"),
        "inference": Restriction("user", "2"),
    }
    assert set(s.grpc_restricted_protocols) == {"model-repository", "inference"}
    with pytest.raises(TypeError):
        s.http_restricted_apis["trace"] = Restriction("x", "y")  # type: ignore[index]
    assert _settings(tmp_path).http_restricted_apis == {}


def test_the_same_api_on_both_protocols_is_fine_but_not_twice_on_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings(tmp_path, "--http-restricted-api=trace:k=v", "--grpc-restricted-protocol=trace:k=v")
    with pytest.raises(SystemExit) as info:
        _settings(tmp_path, "--grpc-restricted-protocol=trace:k=v", "--grpc-restricted-protocol=trace:j=w")
    assert "--grpc-restricted-protocol" in str(info.value.code)
    assert "restricted protocol 'trace' can not be specified in multiple" in str(info.value.code)


# ----------------------------------------------------------------------------------------------------
# tables and the check


def test_every_rpc_has_a_category() -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {m.name for m in service.methods} == set(GRPC_CATEGORIES)
    assert set(GRPC_CATEGORIES.values()) == set(RESTRICTED_CATEGORIES)


def test_every_http_route_has_a_known_category() -> None:
    categories = {category for category, _ in ROUTES}
    assert categories == set(RESTRICTED_CATEGORIES) - {"inference"}  # inference: the fast routes


def test_header_check() -> None:
    check = HeaderCheck(Restriction("Admin-Key", "s3cret"))
    assert check.http_message == "This API is restricted, expecting header 'Admin-Key'"
    assert check.grpc_message == "This protocol is restricted, expecting header 'Admin-Key'"
    assert check.allows_http([(b"host", b"x"), (b"admin-key", b"s3cret")])
    assert not check.allows_http([(b"admin-key", b"s3cret ")])
    assert not check.allows_http([(b"admin-key", b"wrong"), (b"admin-key", b"s3cret")])  # the first counts
    assert not check.allows_http([])
    assert check.allows_grpc([("admin-key", "s3cret")])
    assert not check.allows_grpc([("admin-key", "S3CRET")])
    assert not check.allows_grpc(None)


# ----------------------------------------------------------------------------------------------------
# the HTTP app, driven directly


class _Server:
    started = True

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    def is_live(self) -> bool:
        return True

    async def wait_started(self) -> None:
        return None


def _call(settings: ServerSettings, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    app = create_http_app(_Server(settings))  # type: ignore[arg-type]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=10))
    return sent[0]["status"], orjson.loads(sent[1]["body"]) if sent[1]["body"] else None


def test_http_app_refuses_before_routing() -> None:
    settings = ServerSettings(
        http_restricted_apis={"health": Restriction("k", "v"), "inference": Restriction("i", "w")}
    )
    assert _call(settings, "GET", "/v2/health/live", []) == (
        403, {"error": "This API is restricted, expecting header 'k'"}
    )  # fmt: skip
    assert _call(settings, "POST", "/v2/health/live", []) == (
        403, {"error": "This API is restricted, expecting header 'k'"}
    )  # fmt: skip
    assert _call(settings, "GET", "/v2/health/live", [(b"k", b"v")])[0] == 200
    assert _call(settings, "POST", "/v2/models/m/infer", [])[1] == {
        "error": "This API is restricted, expecting header 'i'"
    }
    assert _call(settings, "GET", "/v2/models/m/versions/1/infer", [])[0] == 403
    assert _call(settings, "GET", "/v2/no/such/route", [])[0] == 404


def test_http_app_without_restrictions_checks_nothing() -> None:
    app = create_http_app(_Server(ServerSettings()))  # type: ignore[arg-type]
    assert app._route_checks is None
    assert all(check is None for _, check in app._fast_routes)


# ----------------------------------------------------------------------------------------------------
# the startup warning


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (ServerSettings(model_control_mode="none"), None),
        (ServerSettings(model_control_mode="poll"), None),
        (ServerSettings(model_control_mode="explicit"), "HTTP and gRPC"),
        (ServerSettings(model_control_mode="explicit", allow_grpc=False), "HTTP:"),
        (
            ServerSettings(
                model_control_mode="explicit",
                http_restricted_apis={"model-repository": Restriction("k", "v")},
            ),
            "gRPC:",
        ),
        (
            ServerSettings(
                model_control_mode="explicit",
                allow_http=False,
                grpc_restricted_protocols={"model-repository": Restriction("k", "v")},
            ),
            None,
        ),
    ],
)
def test_unrestricted_repository_warning(settings: ServerSettings, expected: str | None) -> None:
    warning = unrestricted_repository_warning(settings)
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and f"not restricted on {expected}" in warning


def test_the_generate_routes_are_inference() -> None:
    settings = ServerSettings(http_restricted_apis={"inference": Restriction("i", "w")})
    refused = (403, {"error": "This API is restricted, expecting header 'i'"})
    for path in (
        "/v2/models/m/generate",
        "/v2/models/m/generate_stream",
        "/v2/models/m/versions/2/generate",
        "/v2/models/m/versions/2/generate_stream",
    ):
        assert _call(settings, "POST", path, []) == refused, path
        assert _call(settings, "GET", path, []) == refused, path  # refused before the method is looked at
