"""Load-API override files that cannot be written or are refused answer Triton's "failed to poll from
model repository" with the reason, never a server path; the temporary copy is removed."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.errors import InvalidInput
from modelport.repository.overrides import materialize
from modelport.repository.source import read_model_folder

POLL_FAILED = "failed to load '{}', failed to poll from model repository: "


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the temporary copies go during the test (so a left-over copy is seen)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


def _failure(model: str, files: dict[str, bytes], source: Path | None = None) -> str:
    with pytest.raises(InvalidInput) as info:
        materialize(model, read_model_folder(source) if source else None, files)
    return info.value.message


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("file:1/" + "a" * 300, "file override '1/" + "a" * 118 + "...' cannot be written: File name too"),
        ("file:" + "b" * 300 + "/model.onnx", "file override '" + "b" * 120 + "...' cannot be written: "),
        ("file:1/" + ("c" * 200 + "/") * 30 + "x", "cannot be written: File name too long"),
    ],
)
def test_an_override_the_file_system_refuses(temp_root: Path, key: str, reason: str) -> None:
    message = _failure("m", {"file:1/model.onnx": b"ok", key: b"x"})
    assert message.startswith(POLL_FAILED.format("m"))
    assert reason in message
    assert str(temp_root) not in message and "modelport-override-" not in message
    assert list(temp_root.iterdir()) == []  # the half-written copy is gone


def test_a_model_name_the_file_system_refuses(temp_root: Path) -> None:
    name = "n" * 300
    message = _failure(name, {"file:1/model.onnx": b"ok"})
    assert message == POLL_FAILED.format(name) + "the model folder cannot be prepared: File name too long"
    assert list(temp_root.iterdir()) == []


def test_refused_paths_carry_tritons_message_too(temp_root: Path) -> None:
    message = _failure("m", {"file:../x": b"x"})
    assert message == (
        POLL_FAILED.format("m")
        + "file override 'file:../x' is refused: '..' is not allowed; paths must stay inside the model folder"
    )
    message = _failure("m", {"file:1/model.onnx": b"a", "file:1/model.onnx/x": b"b"})
    assert message.startswith(POLL_FAILED.format("m") + "file override '1/model.onnx")
    assert "is refused" in message
    assert list(temp_root.iterdir()) == []


def test_the_server_log_keeps_the_detail(temp_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelport"):
        _failure("m", {"file:1/" + "a" * 300: b"x"})
    assert "failed to poll model 'm'" in caplog.text
    assert str(temp_root) in caplog.text  # the path stays in the server log only
