"""A tritonserver 2.51 command line parses unchanged: the Triton flags modelport does not implement are
accepted in both forms with one warning each, unknown flags still fail, and --model-config-name is kept."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.cli.triton_flags import UNIMPLEMENTED, add_unimplemented_flags, unimplemented_flag_warnings

# `tritonserver --help` of 2.51.0 (the peer in shared/peers/tritonserver.sh): every flag and its argument.
TRITON_2_51_FLAGS: dict[str, str] = dict([
    ("--help", ""),
    ("--id", "<string>"),
    ("--exit-timeout-secs", "<integer>"),
    ("--log-verbose", "<integer>"),
    ("--log-info", "<boolean>"),
    ("--log-warning", "<boolean>"),
    ("--log-error", "<boolean>"),
    ("--log-format", "<string>"),
    ("--log-file", "<string>"),
    ("--model-store", "<string>"),
    ("--model-repository", "<string>"),
    ("--exit-on-error", "<boolean>"),
    ("--disable-auto-complete-config", ""),
    ("--strict-readiness", "<boolean>"),
    ("--model-control-mode", "<string>"),
    ("--repository-poll-secs", "<integer>"),
    ("--load-model", "<string>"),
    ("--model-config-name", "<string>"),
    ("--model-load-thread-count", "<integer>"),
    ("--model-load-retry-count", "<integer>"),
    ("--model-namespacing", "<boolean>"),
    ("--enable-peer-access", "<boolean>"),
    ("--allow-http", "<boolean>"),
    ("--http-address", "<string>"),
    ("--http-port", "<integer>"),
    ("--reuse-http-port", "<boolean>"),
    ("--http-header-forward-pattern", "<string>"),
    ("--http-thread-count", "<integer>"),
    ("--http-restricted-api", "<<string>:<string>=<string>>"),
    ("--allow-grpc", "<boolean>"),
    ("--grpc-address", "<string>"),
    ("--grpc-port", "<integer>"),
    ("--reuse-grpc-port", "<boolean>"),
    ("--grpc-header-forward-pattern", "<string>"),
    ("--grpc-infer-allocation-pool-size", "<integer>"),
    ("--grpc-use-ssl", "<boolean>"),
    ("--grpc-use-ssl-mutual", "<boolean>"),
    ("--grpc-server-cert", "<string>"),
    ("--grpc-server-key", "<string>"),
    ("--grpc-root-cert", "<string>"),
    ("--grpc-infer-response-compression-level", "<string>"),
    ("--grpc-keepalive-time", "<integer>"),
    ("--grpc-keepalive-timeout", "<integer>"),
    ("--grpc-keepalive-permit-without-calls", "<boolean>"),
    ("--grpc-http2-max-pings-without-data", "<integer>"),
    ("--grpc-http2-min-recv-ping-interval-without-data", "<integer>"),
    ("--grpc-http2-max-ping-strikes", "<integer>"),
    ("--grpc-max-connection-age", "<integer>"),
    ("--grpc-max-connection-age-grace", "<integer>"),
    ("--grpc-restricted-protocol", "<<string>:<string>=<string>>"),
    ("--allow-sagemaker", "<boolean>"),
    ("--sagemaker-port", "<integer>"),
    ("--sagemaker-safe-port-range", "<<integer>-<integer>>"),
    ("--sagemaker-thread-count", "<integer>"),
    ("--allow-vertex-ai", "<boolean>"),
    ("--vertex-ai-port", "<integer>"),
    ("--vertex-ai-thread-count", "<integer>"),
    ("--vertex-ai-default-model", "<string>"),
    ("--allow-metrics", "<boolean>"),
    ("--allow-gpu-metrics", "<boolean>"),
    ("--allow-cpu-metrics", "<boolean>"),
    ("--metrics-address", "<string>"),
    ("--metrics-port", "<integer>"),
    ("--metrics-interval-ms", "<float>"),
    ("--metrics-config", "<<string>=<string>>"),
    ("--trace-config", "<<string>,<string>=<string>>"),
    ("--backend-directory", "<string>"),
    ("--backend-config", "<<string>,<string>=<string>>"),
    ("--repoagent-directory", "<string>"),
    ("--cache-config", "<<string>,<string>=<string>>"),
    ("--cache-directory", "<string>"),
    ("--rate-limit", "<string>"),
    ("--rate-limit-resource", "<<string>:<integer>:<integer>>"),
    ("--pinned-memory-pool-byte-size", "<integer>"),
    ("--cuda-memory-pool-byte-size", "<<integer>:<integer>>"),
    ("--cuda-virtual-address-size", "<<integer>:<integer>>"),
    ("--min-supported-compute-capability", "<float>"),
    ("--buffer-manager-thread-count", "<integer>"),
    ("--host-policy", "<<string>,<string>=<string>>"),
    ("--model-load-gpu-limit", "<<device_id>:<fraction>>"),
    ("--strict-model-config", "<boolean>"),
    ("--response-cache-byte-size", "<integer>"),
    ("--trace-file", "<string>"),
    ("--trace-level", "<string>"),
    ("--trace-rate", "<integer>"),
    ("--trace-count", "<integer>"),
    ("--trace-log-frequency", "<integer>"),
])  # fmt: skip


def _parse(repo: Path, *args: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["serve", "--model-repository", str(repo), *args])


def _own_flags() -> set[str]:
    """The flags modelport's serve parser implements itself."""
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    return {
        flag
        for action in serve._actions
        if action.dest != "unimplemented_triton_flags"
        for flag in action.option_strings
    }


def test_the_list_is_tritons_own_with_its_argument_kinds() -> None:
    assert {flag: TRITON_2_51_FLAGS.get(flag) for flag in UNIMPLEMENTED} == UNIMPLEMENTED


def test_every_triton_flag_is_implemented_or_accepted_and_none_is_both() -> None:
    own = _own_flags()
    assert not own & set(UNIMPLEMENTED), "implemented now: remove from cli/triton_flags.py"
    assert set(TRITON_2_51_FLAGS) - own - set(UNIMPLEMENTED) == set()


@pytest.mark.parametrize("flag", sorted(UNIMPLEMENTED))
def test_each_flag_in_both_forms_is_one_warning(tmp_path: Path, flag: str) -> None:
    value = {"<boolean>": "true", "<float>": "2.5"}.get(UNIMPLEMENTED[flag], "7")
    for args in ([f"{flag}={value}"], [flag, value]):
        parsed = _parse(tmp_path, *args, "--http-port", "9000")
        assert unimplemented_flag_warnings(parsed) == [
            f"tritonserver flag {flag} is not supported by modelport and is ignored"
        ]
        assert parsed.http_port == 9000  # the value was taken, the next flag still parsed


def test_a_boolean_may_stand_bare_and_values_may_look_like_anything(tmp_path: Path) -> None:
    parsed = _parse(
        tmp_path, "--allow-sagemaker", "--sagemaker-safe-port-range", "8080-8090",
        "--host-policy=numa0,cpu-cores=0-3", "--cuda-memory-pool-byte-size", "0:1024",
        "--model-load-retry-count", "-1",
    )  # fmt: skip
    assert len(unimplemented_flag_warnings(parsed)) == 5


def test_a_repeated_flag_warns_once_and_many_flags_keep_their_order(tmp_path: Path) -> None:
    parsed = _parse(
        tmp_path, "--http-thread-count=4", "--backend-directory", "/opt/tritonserver/backends",
        "--http-thread-count", "8", "--pinned-memory-pool-byte-size=0",
    )  # fmt: skip
    assert [w.split()[2] for w in unimplemented_flag_warnings(parsed)] == [
        "--http-thread-count", "--backend-directory", "--pinned-memory-pool-byte-size",
    ]  # fmt: skip


def test_no_triton_flag_no_warning(tmp_path: Path) -> None:
    assert unimplemented_flag_warnings(_parse(tmp_path)) == []


@pytest.mark.parametrize("args", [["--no-such-flag=1"], ["--no-such-flag"], ["--http-thread-counts=2"]])
def test_unknown_flags_still_fail(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(tmp_path, *args)
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_value_flag_without_its_value_fails_as_in_triton(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _parse(tmp_path, "--http-thread-count")


def test_a_flag_the_parser_defines_already_is_left_alone() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--response-cache-byte-size", type=int, default=0)
    add_unimplemented_flags(parser)
    args = parser.parse_args(["--response-cache-byte-size=5", "--trace-rate", "3"])
    assert args.response_cache_byte_size == 5
    assert unimplemented_flag_warnings(args) == [
        "tritonserver flag --trace-rate is not supported by modelport and is ignored"
    ]


def test_model_config_name(tmp_path: Path) -> None:
    assert settings_from_args(_parse(tmp_path)).model_config_name == ""
    assert settings_from_args(_parse(tmp_path, "--model-config-name=h100")).model_config_name == "h100"
    assert settings_from_args(_parse(tmp_path, "--model-config-name", "a100")).model_config_name == "a100"
    with pytest.raises(SystemExit, match=r"^Error: empty argument for --model-config-name$"):
        settings_from_args(_parse(tmp_path, "--model-config-name="))
