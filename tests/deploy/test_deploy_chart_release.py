"""Distributing what `make push` pushed: `make chart-package` / `make chart-push` (the chart as an OCI
artifact in ECR) and `make kserve-manifests`, all taking the image tag from the IMAGE_TAG `make push` uses.
Packaging and rendering are real (helm package + helm template, kubectl kustomize); pushing is `make -n`."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import REPO, load_yaml_documents, make, run_helm

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REGISTRY_ARGS = ("AWS_REGION=eu-west-1", "AWS_ACCOUNT_ID=123456789012", "ECR_REPOSITORY=modelport")
DUMMY_SECRET = "dummySecretValue+DoNotPrint/9f8e7d"
# semver.org's regular expression for a SemVer 2.0.0 version.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def project_version() -> str:
    found = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert found
    return found[1]


def flat(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def packaged(tgz: Path, member: str, py_tools: Path) -> dict[str, Any]:
    with tarfile.open(tgz) as archive:
        extracted = archive.extractfile(f"modelport/{member}")
        assert extracted is not None
        (document,) = load_yaml_documents(extracted.read().decode(), py_tools)
    return document


@pytest.mark.parametrize(("tag", "version"), [
    ("1a2b3c4", "{project}-1a2b3c4"),
    ("1a2b3c4-dirty", "{project}-1a2b3c4-dirty"),
    ("0123456", "{project}-g0123456"),  # SemVer forbids a numeric identifier with a leading zero
    ("v1.2.3", "1.2.3"),
    ("2.0.0-rc.1", "2.0.0-rc.1"),
    ("nightly_2024.05", "{project}-nightly-2024-05"),
])
def test_chart_version_is_semver_and_app_version_is_the_image_tag(tag: str, version: str) -> None:
    result = make("-n", "chart-package", f"IMAGE_TAG={tag}", "CHART_DIST=out")
    assert result.returncode == 0, result.stderr
    expected = version.format(project=project_version())
    assert SEMVER.match(expected), expected
    assert f"package out/.chart/modelport --version {expected} --app-version {tag} --destination out" in (
        flat(result.stdout))


def test_chart_push_dry_run_logs_helm_in_creates_the_repository_and_pushes() -> None:
    result = make("-n", "chart-push", "IMAGE_TAG=abc123", "CHART_DIST=out", *REGISTRY_ARGS,
                  env={"AWS_ACCESS_KEY_ID": "AKIADUMMYDUMMYDUMMY0", "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET})
    assert result.returncode == 0, result.stderr
    out = flat(result.stdout)
    assert "scripts/check_env.py --for chart-push" in out
    assert (f"aws ecr get-login-password --region eu-west-1 | helm registry login --username AWS "
            f"--password-stdin {REGISTRY}") in out
    assert "describe-repositories --region eu-west-1 --repository-names charts/modelport" in out
    assert "|| aws ecr create-repository --region eu-west-1 --repository-name charts/modelport" in out
    version = f"{project_version()}-abc123"
    assert f"helm push out/modelport-{version}.tgz oci://{REGISTRY}/charts" in out
    assert f"helm install modelport oci://{REGISTRY}/charts/modelport --version {version}" in out
    assert out.index("helm package") < out.index("registry login") < out.index("create-repository") < (
        out.index("helm push"))
    assert DUMMY_SECRET not in result.stdout + result.stderr
    other = make("-n", "chart-push", "IMAGE_TAG=abc123", "CHART_REPOSITORY_PREFIX=ml/charts", *REGISTRY_ARGS)
    assert f"oci://{REGISTRY}/ml/charts" in other.stdout
    assert "--repository-name ml/charts/modelport" in other.stdout


def test_push_chart_and_kserve_use_the_same_default_tag() -> None:
    """Without IMAGE_TAG (the git commit), one make run tags the image, the chart and KServe alike."""
    result = make("-n", "push", "chart-package", "kserve-manifests", *REGISTRY_ARGS)
    assert result.returncode == 0, result.stderr
    out = flat(result.stdout)
    pushed = re.search(rf"docker push {re.escape(REGISTRY)}/modelport:(\S+)", out)
    assert pushed, out
    tag = pushed[1]
    assert f"--app-version {tag} " in out
    assert f'newTag:\\).*|\\1 "{tag}"|' in out
    assert f"modelport:{tag}-gpu|" in out


def test_packaged_chart_installs_the_pushed_image(helm: Path, py_tools: Path, tmp_path: Path) -> None:
    result = make("chart-package", f"HELM={helm}", f"CHART_DIST={tmp_path}", "IMAGE_TAG=abc123",
                  *REGISTRY_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    (tgz,) = tmp_path.glob("*.tgz")
    version = f"{project_version()}-abc123"
    assert tgz.name == f"modelport-{version}.tgz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [tgz.name], "the staging copy is removed"
    chart = packaged(tgz, "Chart.yaml", py_tools)
    assert (chart["version"], chart["appVersion"]) == (version, "abc123")
    assert packaged(tgz, "values.yaml", py_tools)["image"]["repository"] == f"{REGISTRY}/modelport"
    assert (REPO / "deploy/helm/modelport/values.yaml").read_text().count("repository: modelport") == 1, (
        "the source chart is left as it was")
    for extra, image in (((), f"{REGISTRY}/modelport:abc123"),
                         (("--set", "gpu.enabled=true"), f"{REGISTRY}/modelport:abc123-gpu")):
        rendered = run_helm(helm, "template", "modelport", str(tgz), *extra)
        assert rendered.returncode == 0, rendered.stderr
        assert f"image: {image}" in rendered.stdout.replace('"', "")


def test_kserve_manifests_use_the_image_tag(py_tools: Path, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (make kserve-manifests renders with `kubectl kustomize`)")
    result = make("kserve-manifests", f"KUBECTL={kubectl}", f"CHART_DIST={tmp_path}", "IMAGE_TAG=abc123",
                  *REGISTRY_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "kserve"
    assert sorted(p.name for p in out.iterdir()) == ["inferenceservice-gpu.yaml", "modelport.yaml"]
    documents = load_yaml_documents((out / "modelport.yaml").read_text(), py_tools)
    runtime = next(d for d in documents if d["kind"] == "ServingRuntime")
    assert runtime["spec"]["containers"][0]["image"] == f"{REGISTRY}/modelport:abc123"
    assert {d["kind"] for d in documents} == {"ServingRuntime", "InferenceService"}
    (gpu,) = load_yaml_documents((out / "inferenceservice-gpu.yaml").read_text(), py_tools)
    assert gpu["spec"]["predictor"]["model"]["image"] == f"{REGISTRY}/modelport:abc123-gpu"


def test_chart_package_without_helm_names_the_fix(tmp_path: Path) -> None:
    result = make("chart-package", "HELM=/nonexistent/helm", f"CHART_DIST={tmp_path}", *REGISTRY_ARGS)
    assert result.returncode != 0
    assert "chart-package: helm (/nonexistent/helm) not found; fix: install helm 3.8+" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is staged before the check"
