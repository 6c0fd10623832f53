"""`modelport serve` flags (tritonserver's names) parsed into ServerSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.cli.main import build_parser, parse_backend_config, settings_from_args
from modelport.config.settings import DEFAULT_MAX_BATCH_SIZE, ServerSettings


def _settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


def test_defaults(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.model_repositories == (tmp_path.resolve(),)
    assert s.model_control_mode == "none"
    assert s.load_models == ()
    assert s.strict_readiness is True
    assert s.auto_complete_config is True
    assert s.backend_config == {}
    assert s.http_port == 8000 and s.grpc_port == 8001 and s.metrics_port == 8002
    assert s.http_max_input_size == 64 * 1024 * 1024
    assert s.allow_http and s.allow_grpc and s.allow_metrics
    assert s.repository_poll_secs == 15.0
    assert s.exit_timeout_secs == 30.0


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]


def test_repeated_repositories_and_model_store_alias(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    s = _settings(tmp_path / "a", "--model-store", str(tmp_path / "b"))
    assert s.model_repositories == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())


def test_missing_repository_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a folder"):
        _settings(tmp_path / "nope")


@pytest.mark.parametrize(
    ("args", "auto_complete"),
    [
        ((), True),
        (("--strict-model-config=true",), False),
        (("--strict-model-config",), False),
        (("--strict-model-config=false",), True),
        (("--disable-auto-complete-config",), False),
        (("--disable-auto-complete-config", "--strict-model-config=false"), False),
    ],
)
def test_auto_complete_flags(tmp_path: Path, args: tuple[str, ...], auto_complete: bool) -> None:
    assert _settings(tmp_path, *args).auto_complete_config is auto_complete


def test_strict_model_config_is_deprecated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _settings(tmp_path, "--strict-model-config=true")
    assert "deprecated" in capsys.readouterr().err


def test_backend_config_flags(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        "--backend-config=onnxruntime,default-max-batch-size=8",
        "--backend-config",
        "default-max-batch-size=2",
        "--backend-config=python,shm-default-byte-size=1024",
    )
    assert s.backend_config == {
        "onnxruntime": {"default-max-batch-size": "8"},
        "": {"default-max-batch-size": "2"},
        "python": {"shm-default-byte-size": "1024"},
    }
    assert s.default_max_batch_size("onnxruntime") == 8
    assert s.default_max_batch_size("pytorch") == 2


def test_default_max_batch_size_without_backend_config() -> None:
    assert ServerSettings().default_max_batch_size("onnxruntime") == DEFAULT_MAX_BATCH_SIZE == 4


def test_backend_setting_lookup() -> None:
    s = ServerSettings(backend_config={"onnxruntime": {"k": "1"}, "": {"k": "0", "j": "2"}})
    assert s.backend_setting("onnxruntime", "k") == "1"
    assert s.backend_setting("onnxruntime", "j") == "2"
    assert s.backend_setting("python", "k") == "0"
    assert s.backend_setting("python", "missing") is None


def test_parse_backend_config_value_may_contain_equals() -> None:
    assert parse_backend_config(["onnxruntime,opt=a=b"]) == {"onnxruntime": {"opt": "a=b"}}


@pytest.mark.parametrize("value", ["novalue", "onnxruntime,novalue", "=5", "onnxruntime,=5"])
def test_bad_backend_config(value: str) -> None:
    with pytest.raises(SystemExit, match="must look like"):
        parse_backend_config([value])


def test_load_model_requires_explicit_mode(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        _settings(tmp_path, "--load-model", "add_sub")
    assert (
        str(info.value) == "Use of '--load-model' requires setting '--model-control-mode=explicit' as well."
    )
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--model-control-mode=poll", "--load-model=add_sub")


def test_load_model_in_explicit_mode(tmp_path: Path) -> None:
    s = _settings(tmp_path, "--model-control-mode=explicit", "--load-model=a", "--load-model", "b")
    assert s.model_control_mode == "explicit"
    assert s.load_models == ("a", "b")


def test_unknown_control_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--model-control-mode=sometimes")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--allow-grpc=false",), False),
        (("--allow-grpc", "false"), False),
        (("--allow-grpc=0",), False),
        (("--allow-grpc",), True),
        (("--allow-grpc=True",), True),
    ],
)
def test_boolean_flag_forms(tmp_path: Path, args: tuple[str, ...], expected: bool) -> None:
    assert _settings(tmp_path, *args).allow_grpc is expected


def test_bad_boolean_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--strict-readiness=maybe")


def test_network_flags(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        "--http-port=9000",
        "--http-address=127.0.0.1",
        "--http-max-input-size=1024",
        "--strict-readiness=false",
        "--exit-on-error=true",
        "--id=myserver",
        "--allow-metrics=false",
    )
    assert (s.http_port, s.http_address, s.http_max_input_size) == (9000, "127.0.0.1", 1024)
    assert s.strict_readiness is False
    assert s.exit_on_error is True
    assert s.server_id == "myserver"
    assert s.allow_metrics is False
