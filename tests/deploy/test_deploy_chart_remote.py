"""The chart hands an object-store repository URL straight to the server (modelRepository.source=remote),
with credentials from Kubernetes Secrets or each cloud's workload identity on the ServiceAccount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import CHART, helm_template, kubernetes_validate, run_helm

from modelport.cli.main import build_parser
from modelport.cli.repository_flags import repository_roots

ROLE = "arn:aws:iam::123456789012:role/model-reader"
GSA = "model-reader@my-project.iam.gserviceaccount.com"
CLIENT_ID = "12345678-1234-1234-1234-123456789012"


def _remote(url: str, *extra: str) -> list[str]:
    return ["--set", "modelRepository.source=remote", "--set", f"modelRepository.remote.url={url}", *extra]


def _env(rendered: Any) -> dict[str, Any]:
    return {e["name"]: e for e in rendered.server_container()["env"]}


def _validate(rendered: Any, py_tools: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "remote.yaml"
    manifest.write_text(rendered.text)
    result = kubernetes_validate(manifest, py_tools)
    assert result.returncode == 0, result.stdout + result.stderr


def test_s3_url_goes_to_the_server_with_irsa(helm: Path, py_tools: Path, tmp_path: Path) -> None:
    url = "s3://models-bucket/production/repo"
    rendered = helm_template(helm, py_tools, *_remote(url, "--set", "modelRepository.remote.region=eu-west-1",
                             "--set", f"serviceAccount.workloadIdentity.awsRoleArn={ROLE}",
                             "--set", "server.modelControlMode=poll"))  # fmt: skip
    _validate(rendered, py_tools, tmp_path)
    args = rendered.server_container()["args"]
    assert f"--model-repository={url}" in args and "--model-cache-dir=/var/cache/modelport" in args
    assert "initContainers" not in rendered.pod_spec()
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
    assert rendered.pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    assert _env(rendered)["AWS_REGION"]["value"] == "eu-west-1"
    assert "envFrom" not in rendered.server_container()  # no Secret: the role's web identity is used
    cache = {v["name"]: v for v in rendered.pod_spec()["volumes"]}["model-cache"]
    assert cache["emptyDir"]["sizeLimit"] == "20Gi"
    mounts = {m["name"]: m for m in rendered.server_container()["volumeMounts"]}
    assert mounts["model-cache"]["mountPath"] == "/var/cache/modelport"
    # The server parses what the chart renders: the URL is a remote root mirrored under the cache folder.
    parsed = build_parser().parse_args(args)
    roots, remotes = repository_roots(parsed)
    assert [r.location.url for r in remotes] == [url]
    assert roots[0].parent == Path("/var/cache/modelport")


def test_gcs_with_a_key_secret_and_gke_identity(helm: Path, py_tools: Path, tmp_path: Path) -> None:
    identity = f"serviceAccount.workloadIdentity.gcpServiceAccount={GSA}"
    rendered = helm_template(helm, py_tools, *_remote("gs://models/repo",
                             "--set", "modelRepository.remote.gcsKeySecret=gcs-reader",
                             "--set", identity))  # fmt: skip
    _validate(rendered, py_tools, tmp_path)
    key_path = _env(rendered)["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
    assert key_path == "/var/run/secrets/modelport/gcs/key.json"
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["gcs-key"]["secret"]["secretName"] == "gcs-reader"
    mounts = {m["name"]: m for m in rendered.server_container()["volumeMounts"]}
    assert mounts["gcs-key"]["readOnly"] is True
    annotations = rendered.one("ServiceAccount")["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"] == GSA


def test_azure_with_a_credentials_secret_and_workload_identity(
    helm: Path, py_tools: Path, tmp_path: Path
) -> None:
    identity = f"serviceAccount.workloadIdentity.azureClientId={CLIENT_ID}"
    rendered = helm_template(helm, py_tools, *_remote("as://account/container/repo",
                             "--set", "modelRepository.remote.credentialsSecret=azure-storage",
                             "--set", identity))  # fmt: skip
    _validate(rendered, py_tools, tmp_path)
    assert rendered.server_container()["envFrom"] == [{"secretRef": {"name": "azure-storage"}}]
    annotations = rendered.one("ServiceAccount")["metadata"]["annotations"]
    assert annotations["azure.workload.identity/client-id"] == CLIENT_ID
    labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert "azure.workload.identity/use" not in rendered.deployment()["spec"]["selector"]["matchLabels"]
    assert not any("secret" in str(e.get("value", "")).lower() for e in _env(rendered).values())


def test_init_container_copy_stays_an_option(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(helm, py_tools, "--set", "modelRepository.source=s3",
                             "--set", "modelRepository.s3.uri=s3://bucket/repo",
                             "--set", f"serviceAccount.workloadIdentity.awsRoleArn={ROLE}")  # fmt: skip
    assert rendered.pod_spec()["initContainers"][0]["command"] == ["aws"]
    assert "--model-repository=/models" in rendered.server_container()["args"]
    assert rendered.one("ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "modelRepository.source=remote"], "modelRepository.remote.url"),
        (_remote("ftp://host/repo"), "url"),
        (_remote("s3://b/r", "--set", "serviceAccount.workloadIdentity.awsRoleArn=not-an-arn"), "awsRoleArn"),
        (_remote("gs://b/r", "--set", "serviceAccount.create=false", "--set",
                 f"serviceAccount.workloadIdentity.gcpServiceAccount={GSA}"), "serviceAccount.create"),
    ],
)  # fmt: skip
def test_bad_remote_values_fail_with_a_clear_message(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
