"""Object-store repository URLs in tritonserver's forms, parsed into frozen locations (no I/O).

    s3://bucket/path                    s3://https://host:port/bucket/path (also http://, host:port)
    gs://bucket/path                    as://account/container/path
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

REMOTE_SCHEMES = ("s3", "gs", "as")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+$")


@dataclass(frozen=True, slots=True)
class RepositoryLocation:
    """Where a remote repository lives: `path` is `bucket/prefix` (Azure: `container/prefix`)."""

    url: str  # as given, for messages (never holds a credential: these URL forms have no place for one)
    scheme: str  # s3 | gs | as
    path: str
    endpoint: str = ""  # s3: a custom endpoint such as https://minio:9000
    account: str = ""  # as: the storage account

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    def cache_folder(self, cache_dir: Path) -> Path:
        """Its local mirror: a folder named by a digest of the URL, so the URL never names a path."""
        return cache_dir / hashlib.sha256(self.url.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class RemoteRepository:
    """A remote repository and the local folder its models are downloaded into before they load."""

    location: RepositoryLocation
    cache_root: Path


def is_remote(text: str) -> bool:
    return text.split("://", 1)[0] in REMOTE_SCHEMES and "://" in text


def parse_repository_url(url: str) -> RepositoryLocation:
    """A RepositoryLocation, or ValueError naming what is wrong with the URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in REMOTE_SCHEMES:
        raise ValueError(f"'{url}': not an object-store URL (s3://, gs://, as://)")
    endpoint = ""
    account = ""
    if scheme == "s3":
        endpoint, rest = _s3_endpoint(rest)
    elif scheme == "as":
        account, _, rest = rest.partition("/")
        if not account:
            raise ValueError(f"'{url}': expected as://<account>/<container>/<path>")
    path = rest.strip("/")
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"'{url}': expected a bucket (or container) and an optional path after the scheme")
    return RepositoryLocation(url=url, scheme=scheme, path=path, endpoint=endpoint, account=account)


def _s3_endpoint(rest: str) -> tuple[str, str]:
    """Split `https://host:port/bucket/path` or `host:port/bucket/path` into endpoint and path."""
    for protocol in ("https://", "http://"):
        if rest.startswith(protocol):
            host, _, path = rest[len(protocol):].partition("/")
            if not host:
                raise ValueError(f"'s3://{rest}': the endpoint has no host")
            return protocol + host, path
    first, _, path = rest.partition("/")
    if _HOST_PORT.match(first):
        return "http://" + first, path
    return "", rest
