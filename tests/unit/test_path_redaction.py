"""Server paths in error answers: files are named relative to the model repository (or by their
name alone outside it); the Python backend's tracebacks follow, and keep their full form in the log."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from modelport.backends.python.runner import describe_exception, load_model_module, model_class
from modelport.errors import InternalError
from modelport.observability.redaction import model_repository_of, repository_path, scrub_paths


def test_repository_path_inside_and_outside(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    assert repository_path(repo / "m" / "1" / "model.onnx", repo) == "m/1/model.onnx"
    assert repository_path(str(repo / "m" / "config.pbtxt"), repo) == "m/config.pbtxt"
    assert repository_path("/usr/lib/python3/site-packages/numpy/core.py", repo) == "core.py"
    assert repository_path("<frozen importlib._bootstrap>", repo) == "<frozen importlib._bootstrap>"
    assert model_repository_of(repo / "m" / "1" / "model.py") == repo


def test_a_symlinked_repository_is_recognised_in_both_forms(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "m" / "1").mkdir(parents=True)
    link = tmp_path / "link"
    os.symlink(real, link)
    assert repository_path(real / "m" / "1" / "model.onnx", link) == "m/1/model.onnx"
    message = f"Load model from {real}/m/1/model.onnx failed; see {link}/m/1/model.onnx"
    assert scrub_paths(message, link) == "Load model from m/1/model.onnx failed; see m/1/model.onnx"


def test_scrub_paths_leaves_other_text_alone(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    assert scrub_paths(f"open {repo}/a/1/w.bin: no such file", repo) == "open a/1/w.bin: no such file"
    assert scrub_paths(f"{repo}x/other and /etc/passwd", repo) == f"{repo}x/other and /etc/passwd"


def _model(tmp_path: Path, source: str) -> Path:
    model_file = tmp_path / "repo" / "pym" / "1" / "model.py"
    model_file.parent.mkdir(parents=True)
    model_file.write_text(source, encoding="utf-8")
    return model_file


def test_describe_exception_answers_relative_frames_and_logs_the_full_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_file = _model(tmp_path, "def explode():\n    open(__file__ + '.missing')\n")
    module = load_model_module(model_file, "modelport_test_redaction_explode")
    try:
        module.explode()
    except OSError as exc:
        with caplog.at_level(logging.ERROR, logger="modelport"):
            text = describe_exception(exc, model_file)
    assert "No such file or directory: 'pym/1/model.py.missing'" in text
    assert "At:\n  pym/1/model.py(2): explode\n" in text
    assert "  test_path_redaction.py(" in text  # a frame outside the repository: its file name only
    assert str(tmp_path) not in text and str(Path(__file__).parent) not in text
    logged = caplog.records[-1]
    assert logged.exc_info is not None and logged.exc_info[1] is not None
    assert str(model_file) in logging.Formatter().formatException(logged.exc_info)


def test_module_errors_name_the_file_relative_to_the_repository(tmp_path: Path) -> None:
    model_file = _model(tmp_path, "x = 1\n")
    module = load_model_module(model_file, "modelport_test_redaction_noclass")
    with pytest.raises(InternalError) as raised:
        model_class(module, model_file)
    assert raised.value.message == "'pym/1/model.py' does not define a class named TritonPythonModel"


def test_unexpected_errors_show_no_absolute_paths() -> None:
    from modelport.frontends.grpc.errors import internal_message
    from modelport.frontends.http.errors import internal_error_parts
    from modelport.observability.redaction import hide_paths

    error = OSError(2, "No such file or directory: '/srv/models/m/1/model.onnx' (via /tmp/x/y.so)")
    assert hide_paths("at /a/b/c.py and ./rel/x and /top") == "at c.py and ./rel/x and /top"
    assert "/srv" not in internal_message(error) and "model.onnx" in internal_message(error)
    status, _, body = internal_error_parts(error)
    assert status == 500 and b"/srv" not in body and b"/tmp" not in body and b"y.so" in body
