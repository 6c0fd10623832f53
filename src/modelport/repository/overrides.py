"""Load-API file overrides: a private temporary copy of a model folder with the sent files on top.

The user's repository is never written. Override paths are confined to the model folder:
absolute paths, `..`, backslashes, NUL bytes and paths through symbolic links are refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from modelport.errors import InvalidInput
from modelport.repository.source import ModelFolder, read_model_folder

log = logging.getLogger(__name__)

FILE_PREFIX = "file:"
_TEMP_PREFIX = "modelport-override-"


def confined_path(model: str, key: str) -> PurePosixPath:
    """The relative path an override key names (`file:` prefix optional), or INVALID_ARG."""
    raw = key[len(FILE_PREFIX) :] if key.startswith(FILE_PREFIX) else key

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"failed to load '{model}': file override '{key}' is refused: {why}")

    if not raw:
        raise refuse("the path is empty")
    if "\x00" in raw or "\\" in raw:
        raise refuse("the path contains a NUL byte or a backslash")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise refuse("absolute paths are not allowed")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if any(p == ".." for p in parts):
        raise refuse("'..' is not allowed; paths must stay inside the model folder")
    if not parts:
        raise refuse("the path names no file")
    return PurePosixPath(*parts)


def is_plain_name(name: str) -> bool:
    """A model name that is one folder name (never a path)."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")


def check_model_name(name: str) -> None:
    """INVALID_ARG unless `name` can name a model: one folder name, never a path."""
    if not is_plain_name(name):
        raise InvalidInput(
            f"failed to load '{name}': a model name must be one folder name: not empty, '.' or '..', "
            f"and without '/', '\\' or NUL"
        )


def materialize(
    model: str, source: ModelFolder | None, files: Mapping[str, bytes]
) -> tuple[Path, ModelFolder]:
    """Copy `source` (if any) into a new temp folder and write `files` into it.

    Returns the temp root (to delete later with `discard`) and the model folder inside it.
    """
    paths = {confined_path(model, key): data for key, data in files.items()}
    root = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    model_dir = root / model
    try:
        if source is not None and source.path.is_dir():
            shutil.copytree(source.path, model_dir, copy_function=_link_or_copy)
        else:
            model_dir.mkdir()
        for relative, data in paths.items():
            _write_confined(model, model_dir, relative, data)
        return root, read_model_folder(model_dir)
    except BaseException:
        discard(root)
        raise


def discard(root: Path | None) -> None:
    """Delete a temp folder made by `materialize` (only those: the name is checked)."""
    if root is None or not root.name.startswith(_TEMP_PREFIX):
        return
    shutil.rmtree(root, ignore_errors=True)


def _write_confined(model: str, model_dir: Path, relative: PurePosixPath, data: bytes) -> None:
    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"failed to load '{model}': file override '{relative}' is refused: {why}")

    target = model_dir
    for part in relative.parts[:-1]:
        target = target / part
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise refuse("the path goes through a link or a file")
        target.mkdir(exist_ok=True)
    target = target / relative.parts[-1]
    if target.is_symlink() or target.is_dir():
        raise refuse("the path names a link or a folder")
    if not target.resolve().is_relative_to(model_dir.resolve()):
        raise refuse("the path leaves the model folder")
    if target.exists():
        target.unlink()  # may be a hard link into the user's repository: never write through it
    target.write_bytes(data)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link when possible (fast, no extra disk); copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
