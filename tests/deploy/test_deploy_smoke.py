"""scripts/smoke_test.py (and `make smoke-test`) against a real `modelport serve` on a free loopback port.

The server gets a tiny labelled classifier built here with onnx.helper, plus the example MobileNetV2 when
`make models` has built it (and numpy, Pillow and scikit-image are installed for the cat photo)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import REPO, free_port, write_tiny_classifier

pytest.importorskip("onnx")

SMOKE = REPO / "scripts" / "smoke_test.py"
MOBILENET = REPO / "examples" / "model_repository" / "mobilenet_v2"


def _has_photo_tools() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("PIL", "skimage"))


def _mobilenet_available() -> bool:
    return (MOBILENET / "1" / "model.onnx").exists() and (MOBILENET / "config.pbtxt").exists()


class Server:
    def __init__(self, repo: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = repo.parent / f"server-{self.port}.log"
        command = [
            sys.executable, "-m", "modelport", "serve", "--model-repository", str(repo),
            "--http-address", "127.0.0.1", "--http-port", str(self.port),
            "--grpc-address", "127.0.0.1", "--grpc-port", str(free_port()),
            "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
            "--exit-timeout-secs", "5",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=repo.parent)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"modelport exited with {self.process.returncode}:\n"
                            f"{self.log.read_text()[-3000:]}")
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"modelport not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _repository(root: Path, with_mobilenet: bool) -> Path:
    repo = root / "models"
    repo.mkdir()
    write_tiny_classifier(repo)
    if with_mobilenet:
        for name in ("mobilenet_v2", "image_classifier", "preprocess", "postprocess"):
            (repo / name).symlink_to(MOBILENET.parent / name, target_is_directory=True)
    return repo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = _repository(tmp_path_factory.mktemp("smoke"), with_mobilenet=_mobilenet_available())
    running = Server(repo)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def smoke(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, str(SMOKE), *args], capture_output=True, text=True, check=False,
                          timeout=120)


# ----------------------------------------------------------------------------------------------------

def test_passes_with_the_tiny_classifier(server: Server) -> None:
    result = smoke(server.url, "--model", "tiny_classifier", "--expect", "cat")
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("ok   live", "ok   ready", "ok   server metadata", "ok   model tiny_classifier ready",
                  "ok   model metadata", "top-1 'cat"):
        assert check in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("PASS")


@pytest.mark.skipif(not _mobilenet_available(), reason="examples/model_repository/mobilenet_v2 not built "
                    "(`make models`); the tiny classifier covers the script")
@pytest.mark.skipif(not _has_photo_tools(), reason="Pillow/scikit-image not installed for the cat photo")
def test_passes_with_mobilenet_and_the_cat_photo(server: Server) -> None:
    result = smoke(server.url)  # the defaults: mobilenet_v2, the cat, expect "cat"
    assert result.returncode == 0, result.stdout + result.stderr
    assert "top-1 'Egyptian cat" in result.stdout


@pytest.mark.skipif(not _mobilenet_available(), reason="examples/model_repository not built (`make models`)")
@pytest.mark.skipif(not _has_photo_tools(), reason="Pillow/scikit-image not installed for the cat photo")
def test_passes_with_the_jpeg_ensemble(server: Server) -> None:
    result = smoke(server.url, "--model", "image_classifier")  # the photo file in, labels out
    assert result.returncode == 0, result.stdout + result.stderr
    assert "top-1 'Egyptian cat" in result.stdout


def test_wrong_answer_fails_with_exit_1(server: Server) -> None:
    result = smoke(server.url, "--model", "tiny_classifier", "--expect", "fish")
    assert result.returncode == 1
    assert "FAIL inference: top-1 class is 'cat" in result.stderr
    assert "expected it to contain 'fish'" in result.stderr


def test_unknown_model_fails_with_exit_1(server: Server) -> None:
    result = smoke(server.url, "--model", "no_such_model")
    assert result.returncode == 1
    assert "FAIL model 'no_such_model' readiness" in result.stderr


def test_make_smoke_test_target(server: Server) -> None:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "smoke-test", "ENV_FILE=/nonexistent", f"SMOKE_URL={server.url}",
         "SMOKE_MODEL=tiny_classifier", "SMOKE_EXPECT=cat", "SMOKE_WAIT=5", f"SMOKE_PYTHON={sys.executable}"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_stopped_server_fails_clearly_with_exit_3(tmp_path: Path) -> None:
    repo = _repository(tmp_path, with_mobilenet=False)
    server = Server(repo)
    try:
        server.wait_ready()
        assert smoke(server.url, "--model", "tiny_classifier", "--quiet").returncode == 0
    finally:
        server.stop()
    result = smoke(server.url, "--model", "tiny_classifier")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "FAIL cannot reach the server" in result.stderr
    assert f"127.0.0.1:{server.port}" in result.stderr
    assert "PASS" not in result.stdout


def test_wait_gives_up_and_reports(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = smoke(f"http://127.0.0.1:{port}", "--wait", "1.5")
    assert 1.0 < time.monotonic() - started < 30
    assert result.returncode == 3
    assert "still not ready after 1.5 s" in result.stdout


def test_missing_photo_packages_exit_4(server: Server, tmp_path: Path) -> None:
    """Without Pillow the image input cannot be built: exit 4 and say what to install."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "PIL.py").write_text("raise ImportError('No module named PIL (shadowed by the test)')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow))
    result = subprocess.run([sys.executable, str(SMOKE), server.url, "--model", "tiny_classifier",
                             "--input", "image"],
                            capture_output=True, text=True, env=env, check=False, timeout=60)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "pip install" in result.stderr and "--input ramp" in result.stderr
