"""MODELPORT_<FLAG> variables for `modelport serve`: every flag has one and --help names it, values go
through the flag's own checks, the command line wins (replacing repeated values), errors name the variable;
the companion distribution that provides `tritonserver` stays in step with modelport's version."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelport.cli.env_flags import env_name
from modelport.cli.main import build_parser, main, parse_args
from modelport.cli.triton_flags import DEST as IGNORED_DEST
from modelport.cli.triton_flags import UNIMPLEMENTED

ROOT = Path(__file__).resolve().parents[2]


def _serve_actions() -> list[argparse.Action]:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    return [a for a in serve._actions if a.option_strings and a.dest not in ("help", IGNORED_DEST)]


def test_every_serve_flag_names_its_variable_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    actions = _serve_actions()
    assert len(actions) > 50
    for action in actions:
        assert f"env {env_name(action)}" in text, action.option_strings
    assert "environment variable" in text and "';'" in text
    assert not any(env_name_of(flag) in text for flag in UNIMPLEMENTED)  # ignored flags have none


def env_name_of(flag: str) -> str:
    return "MODELPORT_" + flag[2:].upper().replace("-", "_")


def test_names(tmp_path: Path) -> None:
    names = {env_name(a) for a in _serve_actions()}
    assert {"MODELPORT_MODEL_REPOSITORY", "MODELPORT_HTTP_PORT", "MODELPORT_GRPC_USE_SSL_MUTUAL",
            "MODELPORT_DISABLE_AUTO_COMPLETE_CONFIG", "MODELPORT_FRONTEND_WORKERS"} <= names  # fmt: skip
    assert "MODELPORT_MODEL_STORE" not in names  # an alias: the first long name counts


def test_environment_alone_gives_typed_values(tmp_path: Path) -> None:
    env = {
        "MODELPORT_MODEL_REPOSITORY": f"{tmp_path};{tmp_path / 'b'};",  # empty items are skipped
        "MODELPORT_HTTP_PORT": "9100", "MODELPORT_REPOSITORY_POLL_SECS": "2.5", "MODELPORT_ALLOW_GRPC": "off",
        "MODELPORT_DISABLE_AUTO_COMPLETE_CONFIG": "yes", "MODELPORT_MODEL_CONTROL_MODE": "poll",
        "MODELPORT_BACKEND_CONFIG": "onnxruntime,default-max-batch-size=8;python,shm-default-byte-size=1024",
    }  # fmt: skip
    args, _ = parse_args(["serve"], env)
    assert args.model_repository == [str(tmp_path), str(tmp_path / "b")]  # folders or s3:// gs:// as:// URLs
    assert (args.http_port, args.repository_poll_secs, args.allow_grpc) == (9100, 2.5, False)
    assert args.disable_auto_complete_config is True and args.model_control_mode == "poll"
    assert args.backend_config == [
        "onnxruntime,default-max-batch-size=8", "python,shm-default-byte-size=1024",
    ]  # fmt: skip


def test_the_command_line_wins(tmp_path: Path) -> None:
    env = {"MODELPORT_MODEL_REPOSITORY": "/env/a;/env/b", "MODELPORT_HTTP_PORT": "9100",
           "MODELPORT_ALLOW_HTTP": "false", "MODELPORT_LOAD_MODEL": "x;y"}  # fmt: skip
    args, _ = parse_args(["serve", "--model-store", str(tmp_path), "--http-port=9200", "--allow-http",
                          "--load-model", "z"], env)  # fmt: skip
    assert args.model_repository == [str(tmp_path)] and args.load_model == ["z"]  # replaced, not extended
    assert args.http_port == 9200 and args.allow_http is True
    args, _ = parse_args(["tritonserver", "--http-port", "9300"], env)
    assert args.model_repository == ["/env/a", "/env/b"] and args.load_model == ["x", "y"]


def test_without_the_environment_nothing_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, _ = parse_args(["serve", "--model-repository", str(tmp_path)], {"MODELPORT_API_KEY": "s3cret"})
    assert args.http_port == 8000 and args.load_model == []
    with pytest.raises(SystemExit):
        parse_args(["serve"], {})
    assert "required: --model-repository" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MODELPORT_HTTP_PORT", "80x", "invalid int value"),
        ("MODELPORT_LOG_FORMAT", "xml", "invalid choice (choose from default, ISO8601, json)"),
        ("MODELPORT_STRICT_READINESS", "2", "expected a boolean, got '2'"),
        ("MODELPORT_DISABLE_AUTO_COMPLETE_CONFIG", "nope", "expected a boolean, got 'nope'"),
        ("MODELPORT_FRONTEND_WORKERS", "-1", "expected a count from 0 or 'auto'"),
    ],
)  # fmt: skip
def test_a_bad_value_names_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["serve", "--model-repository", str(tmp_path)], {variable: value})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"modelport serve: error: environment variable {variable}: {expected}" in err
    assert "usage:" not in err


def test_a_later_check_names_the_variable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_MODEL_REPOSITORY", "/no/such/repository")
    with pytest.raises(SystemExit, match=r"is not a folder \(set by environment variable "
                                         r"MODELPORT_MODEL_REPOSITORY\)$"):  # fmt: skip
        main(["serve"])


def test_the_tritonserver_companion_follows_modelports_version() -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    companion_toml = ROOT / "deploy" / "tritonserver-compat" / "pyproject.toml"
    companion = tomllib.loads(companion_toml.read_text())["project"]
    assert companion["version"] == project["version"]
    assert companion["dependencies"] == [f"modelport=={project['version']}"]
    assert companion["scripts"] == {"tritonserver": "modelport.cli.tritonserver:main"}
    assert project["optional-dependencies"]["tritonserver-compat"] == [
        f"{companion['name']}=={companion['version']}"
    ]
    assert "tritonserver" not in project["scripts"]  # modelport alone never installs the command
