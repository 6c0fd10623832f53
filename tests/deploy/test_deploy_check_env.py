"""`make check-env` / scripts/check_env.py against stub tools on PATH: tiny shell scripts written here that
print a version, answer like aws/kubectl do, or fail; PATH holds nothing else, so no real tool or cloud is
reached. Each failure names its fix; no secret value appears in any output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

SCRIPT = REPO / "scripts" / "check_env.py"
ACCOUNT = "123456789012"
SECRET = "dummySecretValue+DoNotPrint/9f8e7d"
KEY_ID = "AKIADUMMYDUMMYDUMMY0"
TOKEN = "dummySessionToken/abc123"
DB_PASSWORD = "hunter2-dummy-db-password"
VARIABLES = {"AWS_REGION": "eu-west-1", "AWS_ACCOUNT_ID": ACCOUNT, "ECR_REPOSITORY": "modelport",
             "CHART_ECR_REPOSITORY": "charts/modelport"}
KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
ARN = f"arn:aws:iam::{ACCOUNT}:user/deployer"
IDENTITY = json.dumps({"UserId": "AIDADUMMY", "Account": ACCOUNT, "Arn": ARN})
NOT_FOUND = ("An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories "
             "operation: The repository with name 'x' does not exist")

STUBS = {
    "docker": 'echo "Docker version 27.1.1, build 6312585"',
    "aws": f"""case "$1" in
  --version) echo "aws-cli/2.17.0 Python/3.11.9 Linux/6.1 exe/x86_64" ;;
  sts) echo '{IDENTITY}' ;;
  ecr) echo '{{"repositories": [{{"repositoryName": "modelport"}}]}}' ;;
  *) echo "stub aws: unexpected $*" >&2; exit 2 ;;
esac""",
    "helm": 'echo "v3.15.2+g1a500d5"',
    "kubectl": """case "$1" in
  version) echo "Client Version: v1.30.2" ;;
  config) echo "arn:aws:eks:eu-west-1:123456789012:cluster/ml" ;;
  --request-timeout=*) echo '{"major": "1", "minor": "30", "gitVersion": "v1.30.4-eks-a737599"}' ;;
  *) echo "stub kubectl: unexpected $*" >&2; exit 2 ;;
esac""",
}


def write_stubs(bin_dir: Path, stubs: dict[str, str]) -> Path:
    bin_dir.mkdir(exist_ok=True)
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def check_env(tmp_path: Path, *args: str, stubs: dict[str, str] | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = write_stubs(tmp_path / "bin", STUBS if stubs is None else stubs)
    full_env = {"PATH": str(bin_dir), "HOME": str(tmp_path), **VARIABLES, **KEYS, **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=full_env, capture_output=True, text=True,
                          check=False, timeout=60)


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in STUBS.items() if k != name}


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def row(result: subprocess.CompletedProcess[str], name: str) -> str:
    """The summary table's line for a check."""
    return next(line for line in result.stdout.splitlines() if line.strip().startswith(name + " "))


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    for secret in (SECRET, KEY_ID, TOKEN, DB_PASSWORD):
        assert secret not in output(result), f"a secret value was printed:\n{output(result)}"


def test_everything_present_passes_with_versions_and_identity(tmp_path: Path) -> None:
    result = check_env(tmp_path)
    assert result.returncode == 0, output(result)
    assert "Docker version 27.1.1" in row(result, "docker") and " ok " in row(result, "docker")
    assert "aws-cli/2.17.0" in row(result, "aws")
    assert "v3.15.2" in row(result, "helm") and "v1.30.2" in row(result, "kubectl")
    assert f"arn:aws:iam::{ACCOUNT}:user/deployer" in row(result, "aws credentials")
    assert "exists" in row(result, "ECR modelport") and "exists" in row(result, "ECR charts/modelport")
    assert "cluster/ml: server v1.30.4-eks" in row(result, "kube context")
    assert "check-env: ok" in result.stdout
    assert_no_secret(result)


@pytest.mark.parametrize(("tool", "fix"), [
    ("docker", "https://docs.docker.com/engine/install/"),
    ("aws", "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"),
    ("helm", "https://helm.sh/docs/intro/install/"),
    ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
])
def test_each_missing_tool_is_reported_with_its_install_fix(tmp_path: Path, tool: str, fix: str) -> None:
    result = check_env(tmp_path, stubs=without(tool))
    assert result.returncode == 1
    assert "FAIL" in row(result, tool) and "not installed" in row(result, tool)
    assert f"check-env: {tool}: not installed" in result.stderr and fix in result.stderr
    assert f"failed: {tool}" in result.stderr
    assert_no_secret(result)


def test_missing_docker_with_podman_installed_says_set_container_tool(tmp_path: Path) -> None:
    stubs = {**without("docker"), "podman": 'echo "podman version 5.2.2"'}
    result = check_env(tmp_path, stubs=stubs)
    assert result.returncode == 1
    assert "set CONTAINER_TOOL=podman" in result.stderr
    passing = check_env(tmp_path, stubs=stubs, env={"CONTAINER_TOOL": "podman"})
    assert passing.returncode == 0, output(passing)
    assert "podman version 5.2.2" in row(passing, "podman")


def test_failing_credentials_are_reported_and_secrets_masked(tmp_path: Path) -> None:
    # A tool that echoes the secrets back in its error must not get them printed.
    aws = STUBS["aws"].replace(
        f"sts) echo '{IDENTITY}' ;;",
        'sts) echo "An error occurred (InvalidClientTokenId): bad token $AWS_SESSION_TOKEN for '
        '$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY" >&2; exit 254 ;;')
    result = check_env(tmp_path, stubs={**STUBS, "aws": aws}, env={"DB_PASSWORD": DB_PASSWORD})
    assert result.returncode == 1
    assert "FAIL" in row(result, "aws credentials") and "InvalidClientTokenId" in result.stderr
    assert "`aws configure`" in result.stderr
    assert "skip" in row(result, "ECR")  # nothing further asked of AWS without working credentials
    assert "****" in result.stderr
    assert "DB_PASSWORD set" in result.stdout and "AWS_SECRET_ACCESS_KEY set" in result.stdout
    assert_no_secret(result)


def test_profile_credentials_failure_names_sso_login(tmp_path: Path) -> None:
    sso_error = 'sts) echo "Error loading SSO Token: Token for ml does not exist" >&2; exit 255 ;;'
    aws = STUBS["aws"].replace(f"sts) echo '{IDENTITY}' ;;", sso_error)
    env = {"AWS_PROFILE": "ml", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
    result = check_env(tmp_path, stubs={**STUBS, "aws": aws}, env=env)
    assert result.returncode == 1
    assert "aws sso login --profile ml" in result.stderr


def test_missing_ecr_repositories_will_be_created_by_push(tmp_path: Path) -> None:
    aws = STUBS["aws"].replace("ecr) echo", f'ecr) echo "{NOT_FOUND}" >&2; exit 254; echo')
    result = check_env(tmp_path, stubs={**STUBS, "aws": aws})
    assert result.returncode == 0, output(result)  # `make push` / `make chart-push` create them (ecr-login)
    assert "does not exist yet: `make push` creates it" in row(result, "ECR modelport")
    assert "`make chart-push` creates it" in row(result, "ECR charts/modelport")


def test_ecr_access_denied_is_a_failure(tmp_path: Path) -> None:
    denied = 'ecr) echo "An error occurred (AccessDeniedException)" >&2; exit 254; echo'
    aws = STUBS["aws"].replace("ecr) echo", denied)
    result = check_env(tmp_path, stubs={**STUBS, "aws": aws})
    assert result.returncode == 1
    assert "AccessDeniedException" in row(result, "ECR modelport") and "ecr:CreateRepository" in result.stderr


def test_unreachable_kube_context_names_update_kubeconfig(tmp_path: Path) -> None:
    kubectl = STUBS["kubectl"].replace(
        "--request-timeout=*) echo", '--request-timeout=*) echo "Unable to connect to the server: dial tcp: '
        'i/o timeout" >&2; exit 1; echo')
    result = check_env(tmp_path, stubs={**STUBS, "kubectl": kubectl})
    assert result.returncode == 1
    assert "cluster not reachable" in row(result, "kube context") and "i/o timeout" in result.stderr
    assert "aws eks update-kubeconfig --region eu-west-1 --name <cluster>" in result.stderr
    unset = 'config) echo "error: current-context is not set" >&2; exit 1; echo'
    no_context = STUBS["kubectl"].replace("config) echo", unset)
    result = check_env(tmp_path, stubs={**STUBS, "kubectl": no_context})
    assert result.returncode == 1 and "no current kube context" in result.stderr
    assert "aws eks update-kubeconfig" in result.stderr


def test_old_helm_cannot_push_oci_charts(tmp_path: Path) -> None:
    result = check_env(tmp_path, stubs={**STUBS, "helm": 'echo "v3.7.2+g663a896"'})
    assert result.returncode == 1 and "need 3.8+" in row(result, "helm")


def test_an_identity_in_another_account_is_a_warning(tmp_path: Path) -> None:
    result = check_env(tmp_path, env={"AWS_ACCOUNT_ID": "210987654321"})
    assert result.returncode == 0, output(result)
    assert "warn" in row(result, "aws credentials") and "not AWS_ACCOUNT_ID 210987654321" in result.stderr


def test_for_push_checks_only_what_push_needs(tmp_path: Path) -> None:
    result = check_env(tmp_path, "--for", "push", stubs=without("kubectl") | {"helm": "exit 1"})
    assert result.returncode == 0, output(result)
    assert "kube context" not in result.stdout and "helm" not in result.stdout


def test_offline_checks_variables_only_and_runs_no_tool(tmp_path: Path) -> None:
    result = check_env(tmp_path, "--offline", stubs={})
    assert result.returncode == 0, output(result)
    assert "check-env: ok" in result.stdout and "access keys + session token" in result.stdout
    assert "kube context" not in result.stdout
    assert_no_secret(result)
    missing = check_env(tmp_path, "--offline", stubs={}, env={"ECR_REPOSITORY": ""})
    assert missing.returncode == 1 and "ECR_REPOSITORY is not set" in missing.stderr


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("sed") is None,
                    reason="needs GNU make and sed")
def test_make_check_env_runs_the_script_with_the_makefile_variables(tmp_path: Path) -> None:
    bin_dir = write_stubs(tmp_path / "bin", without("kubectl"))
    (bin_dir / "sed").symlink_to(shutil.which("sed") or "sed")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), **KEYS, "DB_PASSWORD": DB_PASSWORD}
    args = [f"{k}={v}" for k, v in VARIABLES.items() if k != "CHART_ECR_REPOSITORY"]
    make = [shutil.which("make") or "make", "--no-print-directory", "check-env", "ENV_FILE=/nonexistent/.env",
            f"SCRIPT_PYTHON={sys.executable}", "IMAGE_TAG=t1", *args]
    result = subprocess.run(make, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode != 0
    assert "check-env: kubectl: not installed" in result.stderr
    assert "ECR charts/modelport" in result.stdout  # CHART_REPOSITORY_PREFIX/modelport from the Makefile
    assert_no_secret(result)
    offline = subprocess.run([*make, "OFFLINE=1"], cwd=REPO, env=env, capture_output=True, text=True,
                             check=False, timeout=60)
    assert offline.returncode == 0, output(offline)
    assert "check-env: ok" in offline.stdout
    assert_no_secret(offline)
