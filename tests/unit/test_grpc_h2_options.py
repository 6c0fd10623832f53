"""--grpc-stack picks the gRPC server, and the gRPC flags reach the h2 stack's options (ms -> s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.config.settings import ServerSettings
from modelport.frontends.grpc.h2.options import h2_options


def _settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


def test_the_stack_flag(tmp_path: Path) -> None:
    assert _settings(tmp_path).grpc_stack == "h2"
    assert _settings(tmp_path, "--grpc-stack", "aio").grpc_stack == "aio"
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--grpc-stack", "sync")


def test_grpc_flags_become_h2_options(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "--grpc-max-receive-message-size=1000",
        "--grpc-max-send-message-size=2000",
        "--grpc-keepalive-time=10000",
        "--grpc-keepalive-timeout=500",
        "--grpc-keepalive-permit-without-calls",
        "--grpc-http2-max-pings-without-data=0",
        "--grpc-http2-min-recv-ping-interval-without-data=1000",
        "--grpc-http2-max-ping-strikes=5",
        "--grpc-max-connection-age=60000",
        "--grpc-max-connection-age-grace=3000",
    )
    options = h2_options(settings)
    assert (options.receive_limit, options.send_limit) == (1000, 2000)
    assert (options.keepalive_time, options.keepalive_timeout) == (10.0, 0.5)
    assert options.permit_without_calls is True
    assert options.max_pings_without_data == 0
    assert (options.min_ping_interval, options.max_ping_strikes) == (1.0, 5)
    assert (options.max_age, options.max_age_grace) == (60.0, 3.0)


def test_triton_defaults(tmp_path: Path) -> None:
    options = h2_options(_settings(tmp_path))
    assert (options.keepalive_time, options.keepalive_timeout) == (7200.0, 20.0)
    assert (options.min_ping_interval, options.max_ping_strikes, options.max_age) == (300.0, 2, 0.0)
