"""The Makefile's deployment targets: help, check-env's variable checks (OFFLINE=1, never showing secrets;
test_deploy_check_env.py covers the tools and services), and the commands push, deploy and friends would
run (`make -n`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import REPO, make

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

DUMMY_SECRET = "dummySecretValue+DoNotPrint/9f8e7d"
DUMMY_KEY_ID = "AKIADUMMYDUMMYDUMMY0"
DUMMY_TOKEN = "dummySessionToken/abc123"
REGISTRY_ENV = {
    "AWS_REGION": "eu-west-1",
    "AWS_ACCOUNT_ID": "123456789012",
    "ECR_REPOSITORY": "modelport",
}
KEYS_ENV = {"AWS_ACCESS_KEY_ID": DUMMY_KEY_ID, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET}
DEPLOY_TARGETS = ("build", "build-gpu", "check-env", "ecr-login", "push", "push-gpu", "chart-package",
                  "chart-push", "kserve-manifests", "deploy", "destroy", "port-forward", "smoke-test")


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------
# help

def test_help_lists_every_target_with_a_description() -> None:
    result = make("help")
    assert result.returncode == 0
    listed = dict(re.findall(r"^\s+(\S+)\s+(.+)$", result.stdout, re.MULTILINE))
    for target in ("install", "models", "run", "test", "lint", "clean", "help", *DEPLOY_TARGETS):
        assert target in listed, f"`make help` does not list {target}"
        assert listed[target].strip()
    # Every phony target in the Makefile is documented.
    phony = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith(".PHONY:"):
            phony.update(line.split(":", 1)[1].split())
    assert phony <= set(listed), phony - set(listed)


# ----------------------------------------------------------------------------------------------------
# check-env

def test_check_env_reports_everything_missing() -> None:
    result = make("check-env", "OFFLINE=1")
    assert result.returncode != 0
    err = result.stderr
    for name in ("AWS_REGION", "AWS_ACCOUNT_ID", "ECR_REPOSITORY"):
        assert f"{name} is not set" in err, err
    assert "no AWS credentials" in err and "AWS_PROFILE" in err
    assert ".env.example" in err


def test_check_env_reports_only_what_is_missing() -> None:
    result = make("check-env", "OFFLINE=1", env={"AWS_REGION": "eu-west-1", "AWS_PROFILE": "ml"})
    assert result.returncode != 0
    assert "AWS_ACCOUNT_ID is not set" in result.stderr and "ECR_REPOSITORY is not set" in result.stderr
    assert "AWS_REGION is not set" not in result.stderr
    assert "credentials" not in result.stderr


def test_check_env_half_a_key_pair_is_missing_credentials() -> None:
    result = make("check-env", "OFFLINE=1", env={**REGISTRY_ENV, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET})
    assert result.returncode != 0
    assert "only one of the two is set" in result.stderr
    assert DUMMY_SECRET not in _output(result)


def test_check_env_rejects_a_malformed_account_id() -> None:
    result = make("check-env", "OFFLINE=1", env={**REGISTRY_ENV, **KEYS_ENV, "AWS_ACCOUNT_ID": "12345"})
    assert result.returncode != 0
    assert "12-digit" in result.stderr
    assert DUMMY_SECRET not in _output(result)


def test_check_env_passes_with_keys_and_never_prints_them() -> None:
    env = {**REGISTRY_ENV, **KEYS_ENV, "AWS_SESSION_TOKEN": DUMMY_TOKEN}
    result = make("check-env", "OFFLINE=1", env=env)
    assert result.returncode == 0, _output(result)
    assert "check-env: ok" in result.stdout
    assert "123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelport" in result.stdout
    for secret in (DUMMY_SECRET, DUMMY_KEY_ID, DUMMY_TOKEN):
        assert secret not in _output(result)


def test_check_env_passes_with_a_profile() -> None:
    result = make("check-env", "OFFLINE=1", env={**REGISTRY_ENV, "AWS_PROFILE": "ml-deployer"})
    assert result.returncode == 0, _output(result)
    assert "profile ml-deployer" in result.stdout


def test_check_env_reads_a_dotenv_file_and_never_prints_its_secret(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**REGISTRY_ENV, **KEYS_ENV}.items()))
    result = make("check-env", "OFFLINE=1", f"ENV_FILE={env_file}")
    assert result.returncode == 0, _output(result)
    assert DUMMY_SECRET not in _output(result) and DUMMY_KEY_ID not in _output(result)
    # The same file with the secret removed fails.
    env_file.write_text("".join(f"{k}={v}\n" for k, v in REGISTRY_ENV.items()))
    assert make("check-env", "OFFLINE=1", f"ENV_FILE={env_file}").returncode != 0


def test_command_line_values_work_too() -> None:
    args = [f"{k}={v}" for k, v in {**REGISTRY_ENV, "AWS_PROFILE": "p"}.items()]
    assert make("check-env", "OFFLINE=1", *args).returncode == 0


def test_env_example_documents_the_variables_without_values_for_secrets() -> None:
    text = (REPO / ".env.example").read_text()
    for name in ("AWS_REGION", "AWS_ACCOUNT_ID", "ECR_REPOSITORY", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "IMAGE_NAME", "NAMESPACE", "RELEASE", "GPU"):
        assert name in text, name
    for line in text.splitlines():
        if re.match(r"\s*AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)\s*=", line):
            assert line.split("=", 1)[1].strip() == "", f"a credential value in .env.example: {line}"


def test_dotenv_is_git_ignored() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert result.returncode == 0, ".env must be git-ignored"


# ----------------------------------------------------------------------------------------------------
# the commands the targets run (make -n runs nothing)

def test_push_dry_run_shows_login_create_tag_push() -> None:
    result = make("-n", "push", "IMAGE_TAG=abc123", env={**REGISTRY_ENV, **KEYS_ENV})
    assert result.returncode == 0, _output(result)
    out = result.stdout
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    login = re.search(r"aws ecr get-login-password --region eu-west-1\s*\\?\s*\|\s*"
                      rf"docker login --username AWS --password-stdin {re.escape(registry)}", out)
    assert login, out
    assert re.search(r"aws ecr describe-repositories --region eu-west-1 --repository-names modelport", out)
    assert re.search(r"\|\|\s*aws ecr create-repository --region eu-west-1 --repository-name modelport", out)
    assert f"docker tag modelport:abc123 {registry}/modelport:abc123" in out
    assert f"docker push {registry}/modelport:abc123" in out
    assert out.index("get-login-password") < out.index("create-repository") < out.index("docker push")
    for secret in (DUMMY_SECRET, DUMMY_KEY_ID):
        assert secret not in _output(result)


def test_push_gpu_dry_run_pushes_the_gpu_tag() -> None:
    result = make("-n", "push-gpu", "IMAGE_TAG=abc123", "CONTAINER_TOOL=podman",
                  env={**REGISTRY_ENV, **KEYS_ENV})
    assert result.returncode == 0, _output(result)
    assert "podman push 123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelport:abc123-gpu" in result.stdout


def test_build_dry_run() -> None:
    result = make("-n", "build", "IMAGE_TAG=t1", "BASE_IMAGE=localhost/base:1")
    assert result.returncode == 0, _output(result)
    out = " ".join(result.stdout.replace("\\\n", " ").split())
    assert ("docker build -f deploy/docker/Dockerfile --build-arg BASE_IMAGE=localhost/base:1 "
            "--build-arg MODELS_DIR=examples/model_repository") in out
    assert "-t modelport:t1 ." in out
    gpu = make("-n", "build-gpu", "IMAGE_TAG=t1", "CONTAINER_TOOL=podman")
    out = " ".join(gpu.stdout.replace("\\\n", " ").split())
    assert "podman build --format docker -f deploy/docker/Dockerfile.gpu" in out
    assert "--platform linux/amd64" in out and "-t modelport:t1-gpu ." in out


def test_build_without_a_model_repository_says_what_to_do() -> None:
    result = make("build", "IMAGE_MODELS=/nonexistent/models", "CONTAINER_TOOL=false")
    assert result.returncode != 0
    assert "make models" in result.stderr and "deploy/docker/models" in result.stderr


def test_deploy_and_destroy_dry_run() -> None:
    result = make("-n", "deploy", "IMAGE_TAG=abc123", "GPU=1", "NAMESPACE=ml",
                  "HELM_VALUES=deploy/helm/values-gpu.yaml", env=REGISTRY_ENV)
    assert result.returncode == 0, _output(result)
    out = " ".join(result.stdout.replace("\\\n", " ").split())
    assert "helm upgrade --install modelport deploy/helm/modelport --namespace ml --create-namespace" in out
    assert "--set image.repository=123456789012.dkr.ecr.eu-west-1.amazonaws.com/modelport" in out
    assert "--set image.tag=abc123" in out and "--set gpu.enabled=true" in out
    assert "--values deploy/helm/values-gpu.yaml" in out and "--wait" in out
    cpu = make("-n", "deploy", "IMAGE_TAG=abc123")
    assert "gpu.enabled" not in cpu.stdout
    assert "--set image.repository=modelport " in cpu.stdout, "no registry configured: the local image name"
    destroy = make("-n", "destroy", "NAMESPACE=ml")
    assert "helm uninstall modelport --namespace ml --ignore-not-found" in destroy.stdout
    assert "kubectl delete namespace" not in destroy.stdout
    destroy_all = make("-n", "destroy", "NAMESPACE=ml", "DELETE_NAMESPACE=1")
    assert "kubectl delete namespace ml" in destroy_all.stdout


def test_port_forward_and_smoke_test_dry_run() -> None:
    forward = make("-n", "port-forward", "NAMESPACE=ml")
    out = " ".join(forward.stdout.replace("\\\n", " ").split())
    assert ("kubectl --namespace ml port-forward --address 127.0.0.1 service/modelport "
            "8000:http 8001:grpc 8002:metrics") in out
    other_release = make("-n", "port-forward", "RELEASE=prod")
    assert "service/prod-modelport" in other_release.stdout
    smoke = make("-n", "smoke-test", "SMOKE_URL=http://127.0.0.1:9999")
    assert "scripts/smoke_test.py http://127.0.0.1:9999 --model mobilenet_v2 --expect 'cat'" in smoke.stdout
