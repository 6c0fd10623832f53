"""--model-repository (local folders and s3:// gs:// as:// URLs, mixed) and --model-cache-dir."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from modelport.config.repository_url import RemoteRepository, is_remote, parse_repository_url


def add_repository_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--model-repository", "--model-store", action="append", required=True,
                       help="model repository: a folder, or s3://, gs://, as:// URL (repeatable; may mix)")
    serve.add_argument("--model-cache-dir", type=Path, default=None, metavar="<folder>",
                       help="where models from object-store repositories are downloaded before they load "
                            "(default: $XDG_CACHE_HOME/modelport/repositories)")  # fmt: skip


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelport" / "repositories"


def repository_roots(args: argparse.Namespace) -> tuple[tuple[Path, ...], tuple[RemoteRepository, ...]]:
    """Every root in the order given (remote ones as their mirror folders) and the remote ones."""
    cache_dir = (args.model_cache_dir or default_cache_dir()).resolve()
    roots: list[Path] = []
    remotes: list[RemoteRepository] = []
    for text in args.model_repository:
        if is_remote(text):
            try:
                location = parse_repository_url(text)
            except ValueError as exc:
                raise SystemExit(f"--model-repository {exc}") from None
            remote = RemoteRepository(location, location.cache_folder(cache_dir))
            remotes.append(remote)
            roots.append(remote.cache_root)
            continue
        if "://" in text:
            raise SystemExit(f"--model-repository '{text}': unsupported URL (use a folder, s3://, gs:// or as://)")
        path = Path(text)
        if not path.is_dir():
            raise SystemExit(f"--model-repository '{path}' is not a folder")
        roots.append(path.resolve())
    return tuple(roots), tuple(remotes)
