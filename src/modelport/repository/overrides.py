"""Load-API file overrides: a private temporary copy of a model folder with the sent files on top.

The user's repository is never written. Override paths are confined to the model folder:
absolute paths, `..`, backslashes, NUL bytes and paths through symbolic links are refused.
Every failure to build the copy answers Triton's "failed to poll from model repository" with the
reason; the server's own paths (the temporary folder) go to the server log only.
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
_SHOWN_PATH_CHARS = 120  # an over-long override path is cut short in answers and logs


def poll_failed(name: str, reason: str = "") -> InvalidInput:
    """The answer to a load that cannot even begin (no such folder, a bad name or override).

    Triton's text (with modelport's reason after it, when there is one); Triton answers it with
    500, modelport with 400: each cause is the client's.
    """
    message = f"failed to load '{name}', failed to poll from model repository"
    return InvalidInput(f"{message}: {reason}" if reason else message)


class _Refused(ValueError):
    """Why an override path is refused; the text names the path as the client sent it."""


def confined_path(model: str, key: str) -> PurePosixPath:
    """The relative path an override key names (`file:` prefix optional), or INVALID_ARG."""
    try:
        return _relative_path(key)
    except _Refused as exc:
        raise InvalidInput(f"failed to load '{model}': {exc}") from None


def _relative_path(key: str) -> PurePosixPath:
    raw = key[len(FILE_PREFIX) :] if key.startswith(FILE_PREFIX) else key

    def refuse(why: str) -> _Refused:
        return _Refused(f"file override '{_shown(key)}' is refused: {why}")

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

    Returns the temp root (to delete later with `discard`) and the model folder inside it; raises
    `poll_failed` with the reason, never with a server path.
    """
    try:
        paths = {_relative_path(key): data for key, data in files.items()}
    except _Refused as exc:
        log.error("failed to poll model '%s': %s", model, exc)
        raise poll_failed(model, str(exc)) from None
    root = _temp_root(model)
    model_dir = root / model
    try:
        _copy_model(model, source, model_dir)
        for relative, data in paths.items():
            _write_override(model, model_dir, relative, data)
        return root, read_model_folder(model_dir)
    except OSError as exc:  # reading the copy back
        discard(root)
        log.error("failed to poll model '%s': %s", model, exc)
        raise poll_failed(model, f"its files cannot be read back: {_os_reason(exc)}") from None
    except BaseException:
        discard(root)
        raise


def _temp_root(model: str) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    except OSError as exc:
        log.error("failed to poll model '%s': no temporary folder for its override files: %s", model, exc)
        raise poll_failed(model, f"no temporary folder for its files: {_os_reason(exc)}") from None


def _copy_model(model: str, source: ModelFolder | None, model_dir: Path) -> None:
    try:
        if source is not None and source.path.is_dir():
            shutil.copytree(source.path, model_dir, copy_function=_link_or_copy)
        else:
            model_dir.mkdir()
    except OSError as exc:  # a model name the file system refuses, an unreadable model folder...
        log.error("failed to poll model '%s': copying its folder for the override failed: %s", model, exc)
        reason = "some files cannot be copied" if isinstance(exc, shutil.Error) else _os_reason(exc)
        raise poll_failed(model, f"the model folder cannot be prepared: {reason}") from None


def _write_override(model: str, model_dir: Path, relative: PurePosixPath, data: bytes) -> None:
    try:
        _write_confined(model_dir, relative, data)
    except _Refused as exc:
        log.error("failed to poll model '%s': %s", model, exc)
        raise poll_failed(model, str(exc)) from None
    except OSError as exc:  # a name too long for the file system, a full disk...
        log.error("failed to poll model '%s': override file '%s' cannot be written: %s", model, relative, exc)
        shown = _shown(str(relative))
        raise poll_failed(model, f"file override '{shown}' cannot be written: {_os_reason(exc)}") from None


def _os_reason(exc: OSError) -> str:
    """What went wrong, without the path an OSError's text carries."""
    return exc.strerror or type(exc).__name__


def _shown(path: str) -> str:
    return path if len(path) <= _SHOWN_PATH_CHARS else path[:_SHOWN_PATH_CHARS] + "..."


def discard(root: Path | None) -> None:
    """Delete a temp folder made by `materialize` (only those: the name is checked)."""
    if root is None or not root.name.startswith(_TEMP_PREFIX):
        return
    shutil.rmtree(root, ignore_errors=True)


def _write_confined(model_dir: Path, relative: PurePosixPath, data: bytes) -> None:
    def refuse(why: str) -> _Refused:
        return _Refused(f"file override '{_shown(str(relative))}' is refused: {why}")

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
