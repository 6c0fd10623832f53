"""Local copies of remote repositories: each sync lists the bucket and downloads what changed.

A mirror folder is an ordinary repository root, so scanning, fingerprints and the poller's "held
still for one interval" rule work on it unchanged: an object is downloaded again only when its
ETag / generation / last-modified changes, and a version whose objects are still being uploaded
changes between two syncs and is not loaded yet. Files are written whole (temp file, rename), so a
load never reads half a download. A root that cannot be read keeps its last good copy serving; one
never read by this process is served empty rather than from a stale copy left by an earlier run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport.config.repository_url import RemoteRepository
from modelport.repository import object_store
from modelport.repository.object_store import RemoteError, RemoteObject

log = logging.getLogger(__name__)

_MANIFEST = ".modelport-manifest.json"
_LOCK = ".modelport-lock"
_PARTIAL = ".modelport-partial"


class RepositoryMirror:
    """One remote repository and its local copy."""

    def __init__(self, remote: RemoteRepository) -> None:
        self.remote = remote
        self._fs: Any = None
        self._synced = False

    @property
    def root(self) -> Path:
        return self.remote.cache_root

    def sync(self) -> None:
        """Bring the local copy in step with the bucket; RemoteError (safe to show) when it cannot."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            try:
                if self._fs is None:
                    self._fs = object_store.open_filesystem(self.remote.location)
                objects = object_store.list_objects(self._fs, self.remote.location)
                self._apply(objects)
            except RemoteError:
                if not self._synced:
                    _empty(self.root)
                raise
        self._synced = True

    def _apply(self, objects: list[RemoteObject]) -> None:
        manifest = _read_manifest(self.root)
        wanted: dict[str, str] = {}
        try:
            for obj in objects:
                target = _local_path(self.root, obj.key)
                if target is None:
                    url = self.remote.location.url
                    log.warning("%s: ignoring object '%s': not a usable file name", url, obj.key)
                    continue
                wanted[obj.key] = obj.stamp
                if obj.key.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    manifest[obj.key] = obj.stamp
                elif manifest.get(obj.key) != obj.stamp or not target.is_file():
                    self._download(obj.key, target)
                    manifest[obj.key] = obj.stamp
        finally:
            _write_manifest(self.root, manifest)  # what was downloaded before a failure is not fetched again
        for key in set(manifest) - set(wanted):
            target = _local_path(self.root, key)
            if target is not None:
                if not key.endswith("/"):
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        target.unlink()
                _prune(target if key.endswith("/") else target.parent, self.root)
        _write_manifest(self.root, wanted)

    def _download(self, key: str, target: Path) -> None:
        partial = self.root / _PARTIAL
        partial.mkdir(exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=partial)
        os.close(fd)
        try:
            object_store.download(self._fs, self.remote.location, key, scratch)
            if target.is_dir():  # an object now stands where a folder was
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Servers sharing a cache folder take turns syncing it."""
        with open(self.root / _LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


class RemoteRepositories:
    """Every remote root of the server; `sync` refreshes them all and keeps each one's last error."""

    def __init__(self, remotes: tuple[RemoteRepository, ...]) -> None:
        self._mirrors = [RepositoryMirror(remote) for remote in remotes]
        self.errors: dict[Path, str] = {}  # mirror root -> why it could not be read at the last sync

    def __bool__(self) -> bool:
        return bool(self._mirrors)

    def sync(self) -> dict[Path, str]:
        """Sync every remote root; the errors by mirror root (also logged, secrets removed)."""
        errors: dict[Path, str] = {}
        for mirror in self._mirrors:
            try:
                mirror.sync()
            except RemoteError as exc:
                errors[mirror.root] = str(exc)
                log.error("model repository %s", exc)
        self.errors = errors
        return errors

    def reason(self) -> str:
        """Why some roots could not be read, for a model that was not found ('' when all were read)."""
        return "; ".join(self.errors.values())


def _local_path(root: Path, key: str) -> Path | None:
    """Where an object goes under the mirror; None for keys that would leave it or clash with its files."""
    parts = key.removesuffix("/").split("/")
    if any(p in ("", ".", "..") or "\x00" in p for p in parts) or parts[0].startswith(".modelport"):
        return None
    return root.joinpath(*parts)


def _read_manifest(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_manifest(root: Path, manifest: dict[str, str]) -> None:
    scratch = root / (_MANIFEST + ".new")
    scratch.write_text(json.dumps(manifest))
    os.replace(scratch, root / _MANIFEST)


def _prune(folder: Path, root: Path) -> None:
    """Remove folders left empty by deleted objects, up to the mirror root."""
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _empty(root: Path) -> None:
    for entry in root.iterdir():
        if entry.name == _LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
