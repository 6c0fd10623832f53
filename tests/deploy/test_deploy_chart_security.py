"""The chart restricts the APIs that change the server (model-repository, trace, logging) by default,
with Triton's flags on both protocols and a key from a Kubernetes Secret; the health probes stay open."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from deploy_helpers import CHART, helm_template, run_helm

from modelport.cli.restricted_flags import parse_grpc_restricted_protocols, parse_http_restricted_apis
from modelport.config.settings import Restriction

KEY_REF = "$(MODELPORT_API_KEY)"


def _args_with(rendered: Any, flag: str) -> list[str]:
    return [a.split("=", 1)[1] for a in rendered.server_container()["args"] if a.startswith(flag + "=")]


def _key_env(rendered: Any) -> dict[str, Any] | None:
    env = rendered.server_container()["env"]
    return next((e for e in env if e["name"] == "MODELPORT_API_KEY"), None)


def test_default_restricts_the_admin_apis_with_a_generated_secret(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(helm, py_tools)
    secret = rendered.one("Secret")
    assert secret["metadata"]["name"] == "rel-modelport-api-key"
    assert secret["type"] == "Opaque"
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    assert len(key) == 40 and key.isalnum()
    assert _key_env(rendered) == {
        "name": "MODELPORT_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "rel-modelport-api-key", "key": "api-key"}},
    }
    group = f"model-repository,trace,logging:modelport-admin-key={KEY_REF}"
    assert _args_with(rendered, "--http-restricted-api") == [group]
    assert _args_with(rendered, "--grpc-restricted-protocol") == [group]
    assert key not in rendered.text.replace(secret["data"]["api-key"], "")  # only in the Secret


def test_the_rendered_flags_parse_as_modelport_reads_them(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(helm, py_tools)
    (http,) = _args_with(rendered, "--http-restricted-api")
    (grpc,) = _args_with(rendered, "--grpc-restricted-protocol")
    # What the container gets once Kubernetes substitutes the variable.
    http_apis = parse_http_restricted_apis([http.replace(KEY_REF, "k3y")])
    grpc_apis = parse_grpc_restricted_protocols([grpc.replace(KEY_REF, "k3y")])
    assert set(http_apis) == set(grpc_apis) == {"model-repository", "trace", "logging"}
    assert http_apis["model-repository"] == Restriction("modelport-admin-key", "k3y")
    assert grpc_apis["model-repository"] == Restriction("triton-grpc-protocol-modelport-admin-key", "k3y")
    # The probes' health API stays open.
    container = rendered.server_container()
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    probe_paths = {container[probe]["httpGet"]["path"] for probe in probes}
    assert probe_paths == {"/v2/health/live", "/v2/health/ready"}
    assert "health" not in http_apis


def test_no_fixed_default_key(helm: Path, py_tools: Path) -> None:
    """Without a cluster to look the Secret up in, each render draws a new key: none is baked in."""
    keys = {helm_template(helm, py_tools).one("Secret")["data"]["api-key"] for _ in range(2)}
    assert len(keys) == 2


def test_generated_key_is_looked_up_on_upgrade() -> None:
    template = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template


def test_existing_secret(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(
        helm,
        py_tools,
        "--set",
        "restrictedApis.existingSecret=ops-keys",
        "--set",
        "restrictedApis.secretKey=modelport",
        "--set",
        "restrictedApis.header=x-admin",
        "--set",
        "restrictedApis.apis={model-repository,inference}",
    )
    assert rendered.all("Secret") == []
    assert _key_env(rendered) == {
        "name": "MODELPORT_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "ops-keys", "key": "modelport"}},
    }
    assert _args_with(rendered, "--http-restricted-api") == [f"model-repository,inference:x-admin={KEY_REF}"]


def test_restrictions_can_be_turned_off(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(helm, py_tools, "--set-json", "restrictedApis.apis=[]")
    assert rendered.all("Secret") == []
    assert _key_env(rendered) is None
    assert not _args_with(rendered, "--http-restricted-api")
    assert not _args_with(rendered, "--grpc-restricted-protocol")


def test_schema_rejects_bad_restriction_values(helm: Path) -> None:
    for args, needle in {
        ("--set", "restrictedApis.apis={repository}"): "apis",
        ("--set", "restrictedApis.header=bad header"): "header",
        ("--set", "restrictedApis.apis={trace,trace}"): "apis",
    }.items():
        result = run_helm(helm, "template", "rel", str(CHART), *args)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)
