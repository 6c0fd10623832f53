#!/usr/bin/env python3
"""`make check-env`: can the deploy targets run from here? Checks the variables, the tools (container tool,
aws, helm, kubectl) and their versions, the AWS credentials (`aws sts get-caller-identity`), the ECR
repositories for the image and the chart, and the kube context; prints a summary table and the fix for
each failure. Secret values are never printed: variables are shown as set/unset, and any secret value that
a tool echoes is masked.

    python scripts/check_env.py                 # everything (the Makefile passes its variables in the env)
    python scripts/check_env.py --offline       # variables only, no tool runs (CI)
    python scripts/check_env.py --for push      # only what `make push` needs (no helm, kubectl, cluster)

Exit codes: 0 every required check passed (warnings allowed), 1 something required failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PURPOSES = {
    "all": {"container", "aws", "helm", "kubectl"},
    "push": {"container", "aws"},
    "chart-push": {"aws", "helm"},
}
INSTALL = {
    "docker": "install Docker (https://docs.docker.com/engine/install/), or set CONTAINER_TOOL=podman",
    "podman": "install Podman (https://podman.io/docs/installation; Debian: apt-get install podman)",
    "buildah": "install Buildah (Debian: apt-get install buildah)",
    "aws": "install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)",
    "helm": "install Helm 3.8 or newer (https://helm.sh/docs/intro/install/)",
    "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/)",
}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
TOOL_TIMEOUT_S = 20.0
CLUSTER_TIMEOUT_S = 8


@dataclass(frozen=True)
class Check:
    """One row of the summary: status is ok, FAIL (required), warn or skip."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Settings:
    """What the Makefile resolved (command line, .env, environment), read from the environment."""

    region: str
    account_id: str
    repository: str
    chart_repository: str
    container_tool: str
    helm: str
    kubectl: str
    env_file: str
    profile: str
    key_id: bool
    secret_key: bool
    session_token: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str, default: str = "") -> str:
            return env.get(name, default).strip() or default

        return cls(
            region=get("AWS_REGION"), account_id=get("AWS_ACCOUNT_ID"), repository=get("ECR_REPOSITORY"),
            chart_repository=get("CHART_ECR_REPOSITORY"), container_tool=get("CONTAINER_TOOL", "docker"),
            helm=get("HELM", "helm"), kubectl=get("KUBECTL", "kubectl"), env_file=get("ENV_FILE", ".env"),
            profile=get("AWS_PROFILE"), key_id=bool(get("AWS_ACCESS_KEY_ID")),
            secret_key=bool(get("AWS_SECRET_ACCESS_KEY")), session_token=bool(get("AWS_SESSION_TOKEN")),
        )

    @property
    def registry(self) -> str:
        return f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com"


class Redactor:
    """Masks the values of secret-looking environment variables in any text about to be printed."""

    def __init__(self, env: Mapping[str, str]) -> None:
        values = {v.strip() for k, v in env.items() if SECRET_NAME.search(k) and len(v.strip()) >= 4}
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "****")
        return text


Runner = Callable[[list[str], float], tuple[int, str]]


def run_tool(command: list[str], timeout: float) -> tuple[int, str]:
    """(exit status, stdout+stderr); 127 when the command is not installed, 124 when it timed out."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, f"{command[0]}: not installed"
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {timeout:g} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# ----------------------------------------------------------------------------------------------------
# variables (what --offline checks)

def variable_checks(s: Settings) -> tuple[list[Check], list[str]]:
    """The variables and the credential settings, and the error lines to print for them."""
    errors = [f"{name} is not set" for name, value in
              (("AWS_REGION", s.region), ("AWS_ACCOUNT_ID", s.account_id), ("ECR_REPOSITORY", s.repository))
              if not value]
    if s.account_id and not re.fullmatch(r"[0-9]{12}", s.account_id):
        errors.append("AWS_ACCOUNT_ID must be the 12-digit account number")
    image = f"region {s.region}, repository {s.registry}/{s.repository}"
    where = f"set them in the environment, on the make command line, or in {s.env_file} (see .env.example)"
    checks = [Check("variables", "FAIL" if errors else "ok", "; ".join(errors) if errors else image, where)]
    if s.profile:
        source = f"profile {s.profile}"
    elif s.key_id and s.secret_key:
        source = "access keys" + (" + session token" if s.session_token else "")
    else:
        half = " (only one of the two is set)" if s.key_id or s.secret_key else ""
        problem = (f"no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY{half} "
                   "(plus AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE")
        errors.append(problem)
        checks.append(Check("credentials", "FAIL", problem, "`aws configure`, or set the keys"))
        return checks, errors
    checks.append(Check("credentials", "ok", f"from {source} (values not shown)"))
    return checks, errors


def secrets_summary(env: Mapping[str, str]) -> str:
    """'NAME set' / 'NAME unset' for the credential variables and any other secret-looking one that is set."""
    names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    names += sorted(k for k in env if SECRET_NAME.search(k) and k not in names and env[k].strip())
    return ", ".join(f"{n} {'set' if env.get(n, '').strip() else 'unset'}" for n in names)


# ----------------------------------------------------------------------------------------------------
# tools and services

def tool_check(name: str, command: list[str], run: Runner, fix: str) -> Check:
    status, output = run(command, TOOL_TIMEOUT_S)
    if status == 0:
        return Check(name, "ok", first_line(output) or "installed")
    if status == 127:
        return Check(name, "FAIL", "not installed (not on PATH)", fix)
    return Check(name, "FAIL", f"`{' '.join(command)}` failed: {first_line(output)}", fix)


def container_check(s: Settings, run: Runner) -> Check:
    check = tool_check(s.container_tool, [s.container_tool, "--version"], run,
                       INSTALL.get(os.path.basename(s.container_tool), f"install {s.container_tool}"))
    if check.status == "ok" or os.path.basename(s.container_tool) != "docker":
        return check
    if run(["podman", "--version"], TOOL_TIMEOUT_S)[0] == 0:
        return Check(check.name, "FAIL", check.detail, "podman is installed: set CONTAINER_TOOL=podman")
    return check


def helm_check(s: Settings, run: Runner) -> Check:
    check = tool_check("helm", [s.helm, "version", "--short"], run, INSTALL["helm"])
    found = re.search(r"v?(\d+)\.(\d+)", check.detail)
    if check.status == "ok" and found and (int(found[1]), int(found[2])) < (3, 8):
        return Check("helm", "FAIL", f"{check.detail}: OCI charts (chart-push) need 3.8+", INSTALL["helm"])
    return check


def caller_check(s: Settings, run: Runner) -> Check:
    region = ["--region", s.region] if s.region else []
    status, output = run(["aws", "sts", "get-caller-identity", *region, "--output", "json"], TOOL_TIMEOUT_S)
    if status != 0:
        fix = "`aws configure`, or renew AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN"
        if s.profile:
            fix = f"`aws sso login --profile {s.profile}` (SSO) or `aws configure --profile {s.profile}`"
        if status == 124 or re.search(r"Could not connect|timed out|Name or service not known", output):
            fix = "check network access to AWS (proxy, VPN, HTTPS_PROXY); then " + fix
        return Check("aws credentials", "FAIL", f"sts get-caller-identity failed: {first_line(output)}", fix)
    try:
        identity = json.loads(output)
        account, arn = str(identity["Account"]), str(identity["Arn"])
    except (ValueError, KeyError, TypeError):
        return Check("aws credentials", "ok", "aws sts get-caller-identity answered")
    if s.account_id and account != s.account_id:
        return Check("aws credentials", "warn", f"{arn} is in account {account}, not AWS_ACCOUNT_ID "
                     f"{s.account_id}", "check AWS_ACCOUNT_ID, or that this identity may push there")
    return Check("aws credentials", "ok", arn)


def ecr_check(s: Settings, repository: str, creator: str, run: Runner) -> Check:
    name = f"ECR {repository}"
    status, output = run(["aws", "ecr", "describe-repositories", "--region", s.region,
                          "--repository-names", repository, "--output", "json"], TOOL_TIMEOUT_S)
    if status == 0:
        return Check(name, "ok", f"exists in {s.registry}")
    if "RepositoryNotFoundException" in output:
        return Check(name, "ok", f"does not exist yet: `{creator}` creates it")
    return Check(name, "FAIL", f"aws ecr describe-repositories failed: {first_line(output)}",
                 "grant ecr:DescribeRepositories, ecr:CreateRepository and the push actions to this identity")


def cluster_checks(s: Settings, run: Runner) -> list[Check]:
    update = f"aws eks update-kubeconfig --region {s.region or '<region>'} --name <cluster>"
    status, context = run([s.kubectl, "config", "current-context"], TOOL_TIMEOUT_S)
    if status != 0:
        return [Check("kube context", "FAIL", "no current kube context", f"`{update}`")]
    context = first_line(context)
    status, output = run([s.kubectl, f"--request-timeout={CLUSTER_TIMEOUT_S}s", "get", "--raw", "/version"],
                         CLUSTER_TIMEOUT_S + 5)
    if status != 0:
        fix = f"check the network/VPN and credentials, re-run `{update}`, or `kubectl config use-context`"
        return [Check("kube context", "FAIL", f"{context}: cluster not reachable: {first_line(output)}", fix)]
    try:
        version = str(json.loads(output)["gitVersion"])
    except (ValueError, KeyError, TypeError):
        version = "reachable"
    return [Check("kube context", "ok", f"{context}: server {version}")]


def online_checks(s: Settings, purpose: str, run: Runner) -> list[Check]:
    wanted = PURPOSES[purpose]
    checks: list[Check] = []
    if "container" in wanted:
        checks.append(container_check(s, run))
    if "aws" in wanted:
        aws = tool_check("aws", ["aws", "--version"], run, INSTALL["aws"])
        checks.append(aws)
        if aws.status != "ok":
            checks.append(Check("aws credentials", "skip", "needs the aws CLI"))
        else:
            caller = caller_check(s, run)
            checks.append(caller)
            if caller.status == "FAIL" or not (s.region and s.repository):
                checks.append(Check("ECR", "skip", "needs credentials that work, AWS_REGION, ECR_REPOSITORY"))
            else:
                if "container" in wanted:
                    checks.append(ecr_check(s, s.repository, "make push", run))
                if "helm" in wanted and s.chart_repository:
                    checks.append(ecr_check(s, s.chart_repository, "make chart-push", run))
    if "helm" in wanted:
        checks.append(helm_check(s, run))
    if "kubectl" in wanted:
        kubectl = tool_check("kubectl", [s.kubectl, "version", "--client"], run, INSTALL["kubectl"])
        checks.append(kubectl)
        checks.extend(cluster_checks(s, run) if kubectl.status == "ok"
                      else [Check("kube context", "skip", "needs kubectl")])
    return checks


# ----------------------------------------------------------------------------------------------------

def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"  {'check':<{width}}  status  detail"]
    lines += [f"  {c.name:<{width}}  {c.status:<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None, run: Runner = run_tool) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--offline", action="store_true", help="check the variables only; run no tool")
    parser.add_argument("--for", dest="purpose", choices=sorted(PURPOSES), default="all",
                        help="check only what this target needs (default: all)")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    redact = Redactor(env)

    checks, errors = variable_checks(settings)
    for error in errors:
        print(f"check-env: {error}", file=sys.stderr)
    if errors:
        print(f"check-env: set these in the environment, on the make command line, or in {settings.env_file} "
              "(see .env.example)", file=sys.stderr)
    if not args.offline:
        checks += online_checks(settings, args.purpose, run)
        for check in checks[2:]:
            if check.status in ("FAIL", "warn"):
                print(redact(f"check-env: {check.name}: {check.detail}; fix: {check.fix}"), file=sys.stderr)
    print(redact(table(checks)))
    print(f"  secrets: {secrets_summary(env)} (values never shown)")
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        print(f"check-env: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    scope = "" if args.offline else " (tools and services checked)"
    print(redact(f"check-env: ok: {checks[0].detail}, credentials {checks[1].detail}{scope}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
