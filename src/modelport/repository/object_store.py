"""The one boundary to object stores (fsspec with s3fs / gcsfs / adlfs): open, list with stamps, download.

Credentials come from each cloud's usual environment and files (the libraries' own lookup: AWS_* and
profiles, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); Triton's AZURE_STORAGE_KEY is honoured too.
Every foreign error becomes a RemoteError whose text names the problem and holds no secret.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.config.repository_url import RepositoryLocation

# scheme -> (module, filesystem class, pip extra). gcsfs.core's class directly: the package's default export
# probes a bucket's storage layout over gRPC first, which waits a minute wherever that API is absent.
_FILESYSTEMS = {
    "s3": ("s3fs", "S3FileSystem", "s3"),
    "gs": ("gcsfs.core", "GCSFileSystem", "gcs"),
    "as": ("adlfs", "AzureBlobFileSystem", "azure"),
}
# Environment variables whose values must never reach a message, and secret-looking fragments.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_SECRET",
)  # fmt: skip
_SECRET_TEXT = re.compile(r"(AccountKey=|SharedAccessSignature=|[?&]sig=|Signature=|Credential=)[^;&\s'\"]+")
_TIMEOUT_S = 10
_DENIED = ("accessdenied", "access denied", "forbidden", "invalidaccesskeyid", "signaturedoesnotmatch",
           "authenticat", "permission", "unauthorized", "credentials")  # fmt: skip
_MISSING = ("nosuchbucket", "containernotfound", "bucket does not exist")


class RemoteError(Exception):
    """A remote repository could not be read; the message is safe to show and to log."""


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object under the repository: its key relative to the root, size and change stamp."""

    key: str  # ends with "/" for a folder marker
    size: int
    stamp: str  # ETag / generation / last-modified: changes whenever the object's content does


def open_filesystem(location: RepositoryLocation) -> Any:
    """An fsspec filesystem for the location; RemoteError naming the pip extra when it is missing."""
    module_name, class_name, extra = _FILESYSTEMS[location.scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise RemoteError(
            f"{location.url}: reading {location.scheme}:// repositories needs {module_name.split('.')[0]}: "
            f"pip install modelport[{extra}]"
        ) from None
    try:
        return getattr(module, class_name)(skip_instance_cache=True, **_options(location, os.environ))
    except Exception as exc:  # any library's constructor error
        raise RemoteError(f"{location.url}: {describe(exc)}") from None


def _options(location: RepositoryLocation, env: Mapping[str, str]) -> dict[str, Any]:
    if location.scheme == "s3":
        config = {"connect_timeout": 3, "read_timeout": _TIMEOUT_S, "retries": {"max_attempts": 2}}
        options: dict[str, Any] = {"config_kwargs": config}
        if location.endpoint:
            options["endpoint_url"] = location.endpoint
        return options
    if location.scheme == "gs":
        return {"retries": 1, "timeout": _TIMEOUT_S}
    options = {"account_name": location.account}
    key = env.get("AZURE_STORAGE_KEY")
    if key and not env.get("AZURE_STORAGE_CONNECTION_STRING"):
        options["account_key"] = key
    return options


def list_objects(fs: Any, location: RepositoryLocation) -> list[RemoteObject]:
    """Every object under the repository, read fresh (no listing cache)."""
    root = location.path
    try:
        fs.invalidate_cache()
        fs.ls(location.bucket)  # a missing bucket or a refused one fails here; find() may just be empty
        found = fs.find(root, detail=True)
    except Exception as exc:
        raise RemoteError(f"{location.url}: {describe(exc)}") from None
    objects = []
    for path, info in found.items():
        key = path[len(root) :].lstrip("/") if path.startswith(root) else ""
        # A zero-byte key ending in "/" is a folder marker: how an empty folder (an ensemble's version) exists
        if key and info.get("type", "file") == "file":
            objects.append(RemoteObject(key, int(info.get("size") or 0), _stamp(info)))
    return objects


def _stamp(info: Mapping[str, Any]) -> str:
    parts = [str(info[k]) for k in ("ETag", "etag", "generation", "md5Hash") if info.get(k)]
    parts += [str(info[k]) for k in ("LastModified", "last_modified", "updated", "mtime") if info.get(k)]
    return "|".join(parts[:3])


def download(fs: Any, location: RepositoryLocation, key: str, target: str) -> None:
    try:
        fs.get_file(f"{location.path}/{key}", target)
    except Exception as exc:
        raise RemoteError(f"{location.url}: cannot download '{key}': {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """A one-line reason: access denied, missing bucket or unreachable endpoint, with secrets removed."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, PermissionError) or any(word in lowered for word in _DENIED):
        text = f"access denied ({text})"
    elif isinstance(exc, FileNotFoundError) or any(word in lowered for word in _MISSING):
        text = f"bucket or container does not exist ({text})"
    elif isinstance(exc, (ConnectionError, TimeoutError, OSError)) or "connect" in lowered:
        text = f"cannot reach the object store ({text})"
    return scrub(text)[:500]


def scrub(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` without credential values from the environment or secret-looking URL/connection fragments."""
    values = os.environ if env is None else env
    for name in _SECRET_ENV:
        secret = values.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _SECRET_TEXT.sub(lambda m: m.group(1) + "***", text)
