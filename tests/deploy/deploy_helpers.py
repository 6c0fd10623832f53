"""Helpers shared by the deployment tests: paths, running helm and the Python tools, parsing YAML."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "modelport"
TOOLS = REPO / ".cache" / "deploy-tools"
KUBE_VERSION = "1.30.0"


def tool_env(py_tools: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(py_tools) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------------------------------
# YAML and charts


def load_yaml_documents(text: str, py_tools: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in text, parsed by PyYAML in a subprocess (the venv has no PyYAML)."""
    code = (
        "import json, sys, yaml\n"
        "docs = [d for d in yaml.safe_load_all(sys.stdin) if d]\n"
        "json.dump(docs, sys.stdout)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=text,
        capture_output=True,
        text=True,
        env=tool_env(py_tools),
        check=False,
    )
    assert result.returncode == 0, f"YAML does not parse:\n{result.stderr}"
    documents: list[dict[str, Any]] = json.loads(result.stdout)
    return documents


def kubernetes_validate(path: Path, py_tools: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION, str(path)],
        capture_output=True,
        text=True,
        env=tool_env(py_tools),
        check=False,
    )


class Rendered:
    """`helm template` output: the YAML text and its objects, found by kind."""

    def __init__(self, text: str, objects: list[dict[str, Any]]) -> None:
        self.text = text
        self.objects = objects

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)} among {self.kinds()}"
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment()["spec"]["template"]["spec"]
        return spec

    def server_container(self) -> dict[str, Any]:
        containers = self.pod_spec()["containers"]
        return next(c for c in containers if c["name"] == "modelport")


def helm_template(
    helm: Path, py_tools: Path, *args: str, release: str = "rel", namespace: str = "ml"
) -> Rendered:
    result = run_helm(
        helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *args
    )
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return Rendered(result.stdout, load_yaml_documents(result.stdout, py_tools))


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Keep helm's config/cache out of the user's home and away from any kubeconfig.
    for name, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[name] = str(TOOLS / "helm-home" / sub)
    env["KUBECONFIG"] = os.devnull
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )


# ----------------------------------------------------------------------------------------------------
# make


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """make in the repository with no AWS_* variables inherited and no .env file read (unless given)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "ECR_", "MAKE")) and k not in ("IMAGE_TAG", "NAMESPACE", "RELEASE")}
    clean.update(env or {})
    if not any(a.startswith("ENV_FILE=") for a in args):
        args = ("ENV_FILE=/nonexistent/.env", *args)
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=clean, capture_output=True,
                          text=True, check=False, timeout=120)


# ----------------------------------------------------------------------------------------------------
# misc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_tiny_classifier(repo: Path, name: str = "tiny_classifier") -> Path:
    """x FP32 [batch,4] -> scores = x @ P, a permutation that sends x[3] to class 1 ("cat").

    The smoke test's ramp input is [0, 1, 2, 3], so the top class is "cat". Needs onnx (and numpy)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    permutation = np.zeros((4, 4), dtype=np.float32)
    for source, target in ((0, 0), (1, 2), (2, 3), (3, 1)):
        permutation[source, target] = 1.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "P"], ["scores"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        initializer=[helper.make_tensor("P", TensorProto.FLOAT, [4, 4], permutation.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    onnx.save(model, str(folder / "1" / "model.onnx"))
    (folder / "labels.txt").write_text("dog\ncat\nbird\nfish\n")
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "scores" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]\n'
    )
    return folder
