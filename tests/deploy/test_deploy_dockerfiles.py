"""The Dockerfiles: hadolint, and the properties the deployment relies on (base as a build-arg, non-root,
ports, HEALTHCHECK without curl, /models). Building them for real is test_deploy_container.py (opt-in)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import REPO

DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = [text.split(None, 1) for text in logical]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


@pytest.mark.parametrize("kind", list(DOCKERFILES))
def test_hadolint_clean(kind: str, hadolint: Path) -> None:
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILES[kind])], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_checking(hadolint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "DL3008" in result.stdout


@pytest.mark.parametrize("kind", list(DOCKERFILES))
def test_base_image_is_a_build_arg_and_every_stage_uses_it(kind: str) -> None:
    path = DOCKERFILES[kind]
    text = path.read_text()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=\S+", text[:first_from], re.MULTILINE), "ARG BASE_IMAGE before FROM"
    froms = [args for instruction, args in _instructions(path) if instruction == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(args.startswith("${BASE_IMAGE}") for args in froms), froms


@pytest.mark.parametrize("kind", list(DOCKERFILES))
def test_runtime_stage(kind: str) -> None:
    runtime = _stages(DOCKERFILES[kind])[-1]
    by_name: dict[str, list[str]] = {}
    for instruction, args in runtime:
        by_name.setdefault(instruction, []).append(args)
    user = by_name["USER"][-1]
    assert not user.startswith(("root", "0")), user
    assert "UID=10001" in " ".join(by_name["ARG"])
    assert by_name["EXPOSE"] == ["8000 8001 8002"]
    (healthcheck,) = by_name["HEALTHCHECK"]
    assert "/v2/health/ready" in healthcheck and "urllib" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    assert by_name["ENTRYPOINT"] == ['["modelport"]']
    assert "--model-repository=/models" in by_name["CMD"][0]
    copies = " ".join(by_name["COPY"])
    assert "--from=build /opt/modelport" in copies and "--from=models /models /models" in copies
    # Nothing is compiled or fetched in the final stage beyond the distribution's Python.
    assert "pip" not in " ".join(by_name.get("RUN", []))


def test_models_stage_bakes_models_dir_readable_by_the_server_user() -> None:
    for path in DOCKERFILES.values():
        stages = _stages(path)
        models = next(s for s in stages if s[0][1].endswith(" AS models"))
        text = " ".join(f"{i} {a}" for i, a in models)
        assert "ARG MODELS_DIR=examples/model_repository" in text
        assert "COPY ${MODELS_DIR} /models" in text
        assert "chmod -R a+rX" in text


def test_gpu_image_swaps_onnxruntime_for_onnxruntime_gpu() -> None:
    text = DOCKERFILES["gpu"].read_text()
    assert re.search(r"^ARG BASE_IMAGE=nvidia/cuda:[\w.]+-cudnn-runtime-", text, re.MULTILINE)
    assert "pip uninstall --yes onnxruntime" in text
    assert 'onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}' in text
    assert text.index("pip uninstall --yes onnxruntime") < text.index("onnxruntime-gpu==")


def test_cpu_image_stays_cpu_only() -> None:
    text = DOCKERFILES["cpu"].read_text()
    assert "onnxruntime-gpu" not in text and "nvidia" not in text.lower()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim", text, re.MULTILINE)


def test_dockerignore_is_an_allow_list_without_secrets() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "everything is excluded unless re-included"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "src", "deploy/docker", "examples/model_repository"} <= included
    assert not any(name.startswith((".env", ".git", ".venv", ".cache")) for name in included)
    assert "**/.env" in lines


def test_empty_model_repository_for_images_without_models() -> None:
    empty = DOCKER / "models"
    assert empty.is_dir()
    assert not [p for p in empty.iterdir() if p.is_dir()], "no model folders: modelport would load them"


def test_local_base_script_parses() -> None:
    script = DOCKER / "build-local-base.sh"
    assert script.stat().st_mode & 0o111, "executable"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
