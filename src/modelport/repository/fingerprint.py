"""Cheap fingerprints of a model folder (file names, sizes, mtimes, inodes) to tell what changed on disk.

Small files (configs, labels) are also hashed, so an edit within one mtime tick is still seen.

`shared` covers everything outside the version folders (config.pbtxt, labels, warmup data): a
change there reloads every version. Each version folder has its own entry, so a changed or new
version reloads only itself.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from modelport.repository.source import ModelFolder

FileStamp = tuple[str, int, int, int, str]  # relative path, size, mtime_ns, inode, digest of small files
_HASHED_BELOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class ModelFingerprint:
    shared: tuple[FileStamp, ...] = ()
    versions: dict[int, tuple[FileStamp, ...]] = field(default_factory=dict)


def fingerprint_folder(folder: ModelFolder) -> ModelFingerprint:
    """Stamp every file of a model folder; unreadable entries simply do not appear."""
    version_dirs = {path.name for path in folder.versions.values()}
    shared = tuple(sorted(_stamps(folder.path, folder.path, skip=version_dirs)))
    versions = {v: tuple(sorted(_stamps(path, path))) for v, path in folder.versions.items()}
    return ModelFingerprint(shared, versions)


def _stamps(root: Path, folder: Path, skip: set[str] | None = None) -> list[FileStamp]:
    found: list[FileStamp] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if skip is not None and entry.name in skip:
            continue
        try:
            if entry.is_dir():
                found.extend(_stamps(root, Path(entry.path)))
                continue
            info = entry.stat()
        except OSError:
            continue
        found.append(
            (
                os.path.relpath(entry.path, root),
                info.st_size,
                info.st_mtime_ns,
                info.st_ino,
                _digest(entry.path, info),
            )
        )
    return found


def _digest(path: str, info: os.stat_result) -> str:
    if info.st_size >= _HASHED_BELOW:
        return ""
    try:
        with open(path, "rb") as handle:
            return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()
    except OSError:
        return ""
