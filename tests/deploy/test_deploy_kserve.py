"""deploy/kserve: the ServingRuntime and the example InferenceServices.

KServe's CRD schemas are not available offline, so the pod-level parts (containers, probes, resources,
tolerations) are wrapped into Pods and validated with kubernetes-validate --strict; the KServe-level fields
are checked for consistency between the runtime and the services."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import REPO, kubernetes_validate, load_yaml_documents

KSERVE = REPO / "deploy" / "kserve"
KSERVE_ONLY_PREDICTOR_FIELDS = {
    "minReplicas", "maxReplicas", "model", "scaleMetric", "scaleTarget", "containerConcurrency", "timeout",
    "canaryTrafficPercent", "logger", "batcher",
}


@pytest.fixture(scope="module")
def manifests(py_tools: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(KSERVE.glob("*.yaml")):
        (document,) = load_yaml_documents(path.read_text(), py_tools)
        found[path.name] = document
    return found


def _validate_pod(spec: dict[str, Any], name: str, py_tools: Path, tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(pod))
    result = kubernetes_validate(path, py_tools)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource" in result.stdout


def test_serving_runtime(manifests: dict[str, dict[str, Any]], py_tools: Path, tmp_path: Path) -> None:
    runtime = manifests["servingruntime.yaml"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and runtime["kind"] == "ServingRuntime"
    spec = runtime["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    # The backends modelport has: ONNX Runtime, TorchScript (pytorch) and whole Triton repositories.
    assert {"onnx", "pytorch", "triton"} <= {f["name"] for f in spec["supportedModelFormats"]}
    assert not any(f["autoSelect"] for f in spec["supportedModelFormats"])
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    args = container["args"]
    assert args[0] == "serve"
    assert "--model-repository=/mnt/models" in args  # where KServe's storage initializer puts storageUri
    assert "--http-port=8080" in args and "--grpc-port=9000" in args
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    # The port opens before the models load: a startup probe on liveness covers the process start, and
    # liveness then restarts a hung pod within a minute instead of waiting out a long load allowance.
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert liveness["periodSeconds"] * liveness["failureThreshold"] < 60
    assert "initialDelaySeconds" not in liveness
    assert container["securityContext"]["runAsNonRoot"] is True
    _validate_pod({"containers": [container]}, "servingruntime", py_tools, tmp_path)


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "inferenceservice-gpu.yaml"])
def test_inference_services_use_the_runtime(name: str, manifests: dict[str, dict[str, Any]], py_tools: Path,
                                            tmp_path: Path) -> None:
    runtime = manifests["servingruntime.yaml"]
    service = manifests[name]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["storageUri"].startswith(("s3://", "gs://", "pvc://", "https://"))
    # The PodSpec part of the predictor, with the model's container fields, is a valid pod.
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_ONLY_PREDICTOR_FIELDS}
    container = {"name": "kserve-container", "image": model.get("image", "modelport:0.1.0"),
                 "resources": model["resources"]}
    _validate_pod({**pod_spec, "containers": [container]}, name.removesuffix(".yaml"), py_tools, tmp_path)


def test_gpu_inference_service(manifests: dict[str, dict[str, Any]]) -> None:
    predictor = manifests["inferenceservice-gpu.yaml"]["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["model"]["image"].endswith("-gpu")
    assert any(t["key"] == "nvidia.com/gpu" for t in predictor["tolerations"])


def test_kustomization_sets_the_runtime_image(manifests: dict[str, dict[str, Any]]) -> None:
    kustomization = manifests["kustomization.yaml"]
    assert set(kustomization["resources"]) <= {p.name for p in KSERVE.glob("*.yaml")}
    (image,) = kustomization["images"]
    assert image["name"] == "modelport"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # kustomize itself is not needed for the structural check above
    result = subprocess.run([kubectl, "kustomize", str(KSERVE)], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"image: {image['newName']}:{image['newTag']}" in result.stdout
