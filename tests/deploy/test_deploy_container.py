"""Opt-in: build the CPU image for real with buildah, run it with podman and smoke-test it through ports
published on 127.0.0.1 only (models baked in, and a model repository mounted at /models); then run the
Helm-rendered Deployment as a pod with `podman kube play`.

    MODELPORT_CONTAINER_TESTS=1 python -m pytest tests/deploy -m container -s     # or: make test-container

Needs root and Debian's podman, buildah, runc, debootstrap and catatonit, which `make container-tools`
installs (`make test-container` runs it first). No registry is needed:
the base image is a local stand-in for python:3.11-slim built by deploy/docker/build-local-base.sh
(debootstrap), passed as BASE_IMAGE. The podman settings are the ones that work in unprivileged CI sandboxes:
vfs storage, runc, lowered ulimits. Takes a few minutes (mostly the base image and the dependency layer, which
are cached for later runs; `podman --storage-driver vfs rmi -a` frees the space).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import REPO, free_port, helm_template, write_tiny_classifier

pytestmark = [
    pytest.mark.container,
    pytest.mark.timeout(2400),  # the first run builds the base image and downloads the dependencies
    pytest.mark.skipif(os.environ.get("MODELPORT_CONTAINER_TESTS") != "1",
                       reason="opt-in: MODELPORT_CONTAINER_TESTS=1 (builds and runs the image; root)"),
]

BASE_IMAGE = os.environ.get("MODELPORT_TEST_BASE_IMAGE", "localhost/modelport-base:bookworm")
IMAGE = "localhost/modelport:container-test"
PODMAN = ["podman", "--storage-driver", "vfs"]
RUN_LIMITS = ["--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
SMOKE = REPO / "scripts" / "smoke_test.py"
MOBILENET = REPO / "examples" / "model_repository" / "mobilenet_v2" / "1" / "model.onnx"
MAX_IMAGE_BYTES = 800 * 1024 * 1024


def _run(cmd: list[str], timeout: float = 900, check: bool = True,
         **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd[:6])} ... failed (rc {result.returncode}):\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    missing = [tool for tool in ("podman", "buildah", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"the container test needs root and {', '.join(missing) or 'its tools'}: "
                    "run `make container-tools` as root")
    if _run([*PODMAN, "image", "exists", BASE_IMAGE], check=False).returncode != 0:
        env = dict(os.environ, PODMAN_OPTS="--storage-driver vfs")
        ca_bundle = os.environ.get("MODELPORT_EXTRA_CA_BUNDLE") or os.environ.get("PIP_CERT")
        if ca_bundle and Path(ca_bundle).is_file():
            env["EXTRA_CA_BUNDLE"] = ca_bundle  # a TLS-intercepting proxy's CA, so pip works inside the build
        _run([str(REPO / "deploy" / "docker" / "build-local-base.sh"), BASE_IMAGE], env=env)
    models_dir = "examples/model_repository" if MOBILENET.exists() else "deploy/docker/models"
    started = time.monotonic()
    _run(["buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot", "--format", "docker",
          "--layers", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"MODELS_DIR={models_dir}",
          "-f", "deploy/docker/Dockerfile", "-t", IMAGE, "."], cwd=REPO, timeout=1800)
    size = int(_run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", IMAGE]).stdout.strip())
    print(f"\nbuilt {IMAGE} ({models_dir} baked in) in {time.monotonic() - started:.0f} s: "
          f"{size / 1e6:.0f} MB", flush=True)
    assert size < MAX_IMAGE_BYTES, f"the CPU image grew to {size / 1e6:.0f} MB"
    yield IMAGE


class Container:
    def __init__(self, image: str, *extra: str) -> None:
        self.port = free_port()
        self.name = f"modelport-test-{self.port}"
        _run([*PODMAN, *RUN_LIMITS, "run", "--detach", "--name", self.name, *ULIMITS,
              "--publish", f"127.0.0.1:{self.port}:8000", *extra, image])
        self.url = f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        result = _run([*PODMAN, "logs", self.name], check=False)
        return (result.stdout + result.stderr)[-4000:]

    def remove(self) -> None:
        _run([*PODMAN, "rm", "--force", "--time", "5", self.name], check=False)


def _smoke(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, str(SMOKE), url, "--wait", "120", *args], check=False, timeout=300)


@pytest.mark.skipif(not MOBILENET.exists(), reason="examples not built (`make models`): nothing baked in")
def test_image_with_baked_models_passes_the_smoke_test(image: str) -> None:
    container = Container(image)
    try:
        result = _smoke(container.url)
        print(result.stdout, flush=True)
        assert result.returncode == 0, result.stdout + result.stderr + container.logs()
        assert "Egyptian cat" in result.stdout
        # The HEALTHCHECK instruction works inside the image (python + urllib, no curl).
        health = _run([*PODMAN, *RUN_LIMITS, "healthcheck", "run", container.name], check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        uid = _run([*PODMAN, *RUN_LIMITS, "exec", container.name, "id", "-u"]).stdout.strip()
        assert uid == "10001"
        # SIGTERM is handled by the server (PID 1): a clean, prompt exit.
        started = time.monotonic()
        _run([*PODMAN, *RUN_LIMITS, "stop", "--time", "40", container.name])
        assert time.monotonic() - started < 35
        code = _run([*PODMAN, "inspect", "--format", "{{.State.ExitCode}}", container.name]).stdout.strip()
        assert code == "0", container.logs()
    finally:
        container.remove()


def test_mounted_model_repository(image: str, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    write_tiny_classifier(repo)
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = Container(image, "--volume", f"{repo}:/models:ro")
    try:
        result = _smoke(container.url, "--model", "tiny_classifier", "--expect", "cat")
        print(result.stdout, flush=True)
        assert result.returncode == 0, result.stdout + result.stderr + container.logs()
    finally:
        container.remove()


def test_helm_rendered_deployment_runs_under_podman_kube_play(image: str, helm: Path, py_tools: Path,
                                                              tmp_path: Path) -> None:
    """The chart's pod spec (command, args, non-root user, read-only root filesystem, /tmp and /dev/shm
    volumes, probes) works with the real image. Every port is published on 127.0.0.1 only: kube play would
    otherwise publish container ports on all interfaces."""
    if shutil.which("catatonit") is None and not Path("/usr/libexec/podman/catatonit").exists():
        pytest.fail("podman kube play needs catatonit: run `make container-tools` as root")
    repository, tag = image.rsplit(":", 1)
    rendered = helm_template(helm, py_tools, "--set", f"image.repository={repository}",
                             "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
                             release="kubeplay")
    deployment = rendered.deployment()
    container = rendered.server_container()
    host_ports = {}
    for port in container["ports"]:
        port["hostIP"] = "127.0.0.1"
        port["hostPort"] = host_ports[port["name"]] = free_port()
    manifest = tmp_path / "deployment.yaml"
    # The chart's Secret too: the restricted APIs' key reaches the container through it.
    manifest.write_text(json.dumps(rendered.one("Secret")) + "\n---\n" + json.dumps(deployment))
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    _run([*PODMAN, "kube", "play", str(manifest)], env=env)
    try:
        result = _smoke(f"http://127.0.0.1:{host_ports['http']}")
        print(result.stdout, flush=True)
        assert result.returncode == 0, result.stdout + result.stderr
        name = f"{deployment['metadata']['name']}-pod-0-modelport"
        probe = _run([*PODMAN, "exec", name, "sh", "-c", "id -u; touch /x 2>/dev/null || echo read-only"],
                     env=env)
        assert probe.stdout.split() == ["10001", "read-only"], probe.stdout
    finally:
        _run([*PODMAN, "kube", "down", str(manifest)], env=env, check=False)
