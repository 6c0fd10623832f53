"""docs/triton-compat.md: the Deployment written for Triton's image and the one for modelport's differ in
the image line alone, both are valid Kubernetes objects, and modelport takes the container's command line."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from deploy_helpers import kubernetes_validate, load_yaml_documents

from modelport.cli.main import parse_args, settings_from_args
from modelport.cli.triton_flags import unimplemented_flag_warnings
from support.triton_manifest import DOC, container_command, manifests, with_values


def test_the_doc_has_both_manifests() -> None:
    assert set(manifests()) == {"triton", "modelport"}


def test_only_the_image_line_differs() -> None:
    triton, modelport = (manifests()[name].splitlines() for name in ("triton", "modelport"))
    diff = difflib.unified_diff(triton, modelport, n=0, lineterm="")
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert [line[:1] for line in changed] == ["-", "+"], changed
    removed, added = (line[1:].strip() for line in changed)
    assert removed.startswith("image: nvcr.io/nvidia/tritonserver:")
    assert added.startswith("image: ") and "/modelport:" in added


def test_the_docs_diff_block_is_that_difference() -> None:
    found = manifests()
    block = DOC.read_text().split("```diff\n", 1)[1].split("```", 1)[0].splitlines()
    image = {name: next(ln for ln in text.splitlines() if "image:" in ln) for name, text in found.items()}
    assert block == [f"-{image['triton']}", f"+{image['modelport']}"]


@pytest.mark.parametrize("name", ["triton", "modelport"])
def test_each_manifest_validates(name: str, py_tools: Path, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(manifests()[name])
    result = kubernetes_validate(path, py_tools)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_command_line_read_is_the_yaml_one(py_tools: Path) -> None:
    (deployment,) = load_yaml_documents(manifests()["modelport"], py_tools)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container_command(manifests()["modelport"]) == [*container["command"], *container["args"]]


def test_modelport_takes_the_container_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, *args = container_command(manifests()["modelport"])
    assert command == "tritonserver"
    args = with_values(args, {"--model-repository": str(tmp_path)})
    parsed, _ = parse_args([command, *args], {})
    settings = settings_from_args(parsed)
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (8000, 8001, 8002)
    assert settings.log_verbose == 1 and settings.model_repositories == (tmp_path.resolve(),)
    assert settings.auto_complete_config  # --strict-model-config=false keeps auto-complete on
    assert "--strict-model-config is deprecated" in capsys.readouterr().err
    assert unimplemented_flag_warnings(parsed) == [
        "tritonserver flag --pinned-memory-pool-byte-size is not supported by modelport and is ignored"
    ]
