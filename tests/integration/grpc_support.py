"""The repository the gRPC tests serve, and a `modelport serve` subprocess with gRPC as well as HTTP.

The process itself is tests/support/server.py's ServerProcess (with `grpc=True`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from support.models import (
    NUMERIC_TYPES,
    small_models,
    write_classifier,
    write_identity,
    write_nobatch,
)
from support.server import ServerProcess, running_server

STOP_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[2]
MOBILENET = ROOT / "examples" / "model_repository" / "mobilenet_v2"

def mobilenet_available() -> bool:
    return (MOBILENET / "1" / "model.onnx").is_file() and (MOBILENET / "config.pbtxt").is_file()


def build_grpc_repository(repo: Path, with_mobilenet: bool = False) -> Path:
    """Every model that loads: the examples' small models, identity per datatype, a labelled classifier."""
    repo.mkdir(parents=True, exist_ok=True)
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    small_models.write_add_versions(repo)
    small_models.write_simple_noconfig(repo)
    for datatype in NUMERIC_TYPES:
        write_identity(repo, datatype)
    write_classifier(repo)
    write_nobatch(repo)
    if with_mobilenet and mobilenet_available():
        shutil.copytree(MOBILENET, repo / "mobilenet_v2")
    return repo


@contextlib.contextmanager
def running_grpc_server(
    repository: Path, log_path: Path, extra_args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """A started server with HTTP and gRPC; on exit it is stopped by PID and must have exited 0."""
    with running_server(repository, log_path, extra_args, grpc=True, stop_timeout_s=STOP_TIMEOUT_S) as server:
        yield server
