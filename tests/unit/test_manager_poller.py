"""Poll-mode planning, fingerprints and override path confinement (pure functions, real temp folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelport.errors import InvalidInput
from modelport.repository.fingerprint import ModelFingerprint, fingerprint_folder
from modelport.repository.overrides import confined_path, discard, materialize
from modelport.repository.poller import PollPlan, plan_changes
from modelport.repository.source import read_model_folder

A = ModelFingerprint(shared=(("config.pbtxt", 1, 1, 1, ""),))
B = ModelFingerprint(shared=(("config.pbtxt", 2, 2, 1, ""),))


def test_a_change_is_applied_once_it_holds_still_for_one_poll() -> None:
    assert plan_changes({"m": A}, {"m": A}, {"m": B}) == PollPlan()  # just changed: wait
    assert plan_changes({"m": A}, {"m": B}, {"m": B}) == PollPlan(load=("m",))
    assert plan_changes({"m": B}, {"m": B}, {"m": B}) == PollPlan()


def test_new_and_removed_models() -> None:
    assert plan_changes({}, {}, {"n": A}) == PollPlan()
    assert plan_changes({}, {"n": A}, {"n": A}) == PollPlan(load=("n",))
    assert plan_changes({"m": A}, {"m": A}, {}) == PollPlan()
    assert plan_changes({"m": A}, {}, {}) == PollPlan(remove=("m",))


def test_fingerprint_separates_versions_from_shared_files(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"1")
    (tmp_path / "m" / "config.pbtxt").write_text("x")
    before = fingerprint_folder(read_model_folder(tmp_path / "m"))
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"22")
    after = fingerprint_folder(read_model_folder(tmp_path / "m"))
    assert before.shared == after.shared
    assert before.versions[1] == after.versions[1]
    stat = os.stat(tmp_path / "m" / "2" / "model.onnx")
    assert after.versions[2][0][:4] == ("model.onnx", 2, stat.st_mtime_ns, stat.st_ino)
    (tmp_path / "m" / "config.pbtxt").write_text("longer")
    assert fingerprint_folder(read_model_folder(tmp_path / "m")).shared != after.shared


@pytest.mark.parametrize("key", ["../x", "/abs", "1/../../x", "a\\b", "", ".", "1/\x00", "C:/x"])
def test_confined_path_refuses_escapes(key: str) -> None:
    with pytest.raises(InvalidInput, match="is refused"):
        confined_path("m", "file:" + key)


def test_confined_path_accepts_plain_paths() -> None:
    assert str(confined_path("m", "file:1/model.onnx")) == "1/model.onnx"
    assert str(confined_path("m", "./1/sub/./w.bin")) == "1/sub/w.bin"


def test_materialize_copies_and_never_writes_the_source(tmp_path: Path) -> None:
    source = tmp_path / "repo" / "m"
    (source / "1").mkdir(parents=True)
    (source / "1" / "model.onnx").write_bytes(b"original")
    root, folder = materialize(
        "m", read_model_folder(source), {"file:1/model.onnx": b"new", "2/model.onnx": b"v2"}
    )
    try:
        assert folder.name == "m" and sorted(folder.versions) == [1, 2]
        assert (folder.path / "1" / "model.onnx").read_bytes() == b"new"
        assert (source / "1" / "model.onnx").read_bytes() == b"original"
        assert not (source / "2").exists()
    finally:
        discard(root)
    assert not root.exists()


def test_writes_never_reach_through_links_or_files(tmp_path: Path) -> None:
    source = tmp_path / "repo" / "m"
    (source / "1").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (source / "1" / "linked").symlink_to(outside, target_is_directory=True)
    root, folder = materialize("m", read_model_folder(source), {"1/linked/x": b"a"})
    try:
        assert (folder.path / "1" / "linked" / "x").read_bytes() == b"a"
        assert list(outside.iterdir()) == []  # the link was copied as a folder, not followed for writing
    finally:
        discard(root)
    with pytest.raises(InvalidInput, match="is refused"):
        materialize("m", read_model_folder(source), {"1/model.onnx": b"b", "1/model.onnx/x": b"a"})
