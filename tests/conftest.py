"""Shared fixtures: model repositories built in temp folders and real `modelport serve` processes.

Servers are session-scoped so the suite starts each kind once:
* `server`         - every test model, including two broken ones (so it is live but never ready);
* `healthy_server` - only models that load, with --http-max-input-size 1 MiB (ready, and the body cap).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.models import build_full_repository, build_healthy_repository
from support.server import SMALL_INPUT_LIMIT, ServerProcess, running_server


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_full_repository(tmp_path_factory.mktemp("full_repo"))


@pytest.fixture(scope="session")
def healthy_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_healthy_repository(tmp_path_factory.mktemp("healthy_repo"))


@pytest.fixture(scope="session")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "full_server.log"
    # Said explicitly so the fixture keeps working if the default moves to Triton's (true).
    with running_server(model_repository, log, ["--exit-on-error=false"]) as proc:
        yield proc


@pytest.fixture(scope="session")
def healthy_server(
    healthy_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "healthy_server.log"
    args = [f"--http-max-input-size={SMALL_INPUT_LIMIT}"]
    with running_server(healthy_repository, log, args) as proc:
        yield proc
