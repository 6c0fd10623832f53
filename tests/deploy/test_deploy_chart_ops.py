"""The chart's operations extras, rendered by the real helm: the PrometheusRule (its rules checked and
unit-tested by promtool, its metric names found on a real server's /metrics), the Ingresses for HTTP and
gRPC, the Gateway API routes; and the deploy docs' account of startup, which once claimed that the models
load before the port opens.

kubernetes-validate --strict checks every kind it has a schema for (Ingress among them); the Prometheus
operator's and the Gateway API's CRDs are not in its schemas, so their objects are checked here field by
field, and the PrometheusRule's groups by promtool (Debian's prometheus package, from `make test-tools`;
without it those tests skip and say so).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from deploy_helpers import CHART, REPO, Rendered, helm_template, kubernetes_validate, run_helm

from support.models import small_models
from support.server import HOST, free_port, running_server

NAMESPACE = "ml"
FULLNAME = "rel-modelport"
SELECTOR = f'namespace="{NAMESPACE}",job="{FULLNAME}"'
CRD_KINDS = {"PrometheusRule", "ServiceMonitor", "HTTPRoute", "GRPCRoute"}  # no schema in kubernetes-validate
ALERTS = {
    "ModelportHighErrorRate", "ModelportHighQueueTime", "ModelportModelUnavailable", "ModelportPodNotReady",
}
OPS_VALUES = [
    "--set", "prometheusRule.enabled=true",
    "--set", "prometheusRule.labels.release=kube-prometheus-stack",
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "ingress.enabled=true",
    "--set", "ingress.className=nginx",
    "--set", "ingress.http.host=modelport.example.com",
    "--set", "ingress.grpc.host=grpc.modelport.example.com",
    "--set", "ingress.grpc.tlsSecretName=grpc-tls",
    "--set", "gateway.enabled=true",
    "--set", "gateway.parentRefs[0].name=public",
    "--set", "gateway.parentRefs[0].namespace=gateway-system",
    "--set", "gateway.grpc.hostnames={grpc.modelport.example.com}",
]
# Phrases of the old, false account of startup (the ports open first; readiness waits for the models).
FALSE_STARTUP_CLAIMS = re.compile(
    r"models? (are |is )?load(ed|s)? before the (http |grpc )?ports?|"
    r"port(s)? opens? (only )?(once|after|when) the models|"
    r"before the (http |grpc )?port(s)? opens?",
    re.IGNORECASE,
)
DOCUMENTS = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "deploy").rglob("*")]


@pytest.fixture(scope="module")
def ops(helm: Path, py_tools: Path) -> Rendered:
    return helm_template(helm, py_tools, *OPS_VALUES)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: `make test-tools` (as root) installs Debian's prometheus")
    return path


def _rules(rendered: Rendered) -> dict[str, dict[str, Any]]:
    (group,) = rendered.one("PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def _rule_file(rendered: Rendered, directory: Path) -> Path:
    path = directory / "rules.json"  # JSON is YAML: promtool reads it as a rule file
    path.write_text(json.dumps({"groups": rendered.one("PrometheusRule")["spec"]["groups"]}))
    return path


# ----------------------------------------------------------------------------------------------------
# validation


def test_ops_render_is_valid_kubernetes(ops: Rendered, py_tools: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "ops.yaml"
    manifest.write_text(ops.text)
    result = kubernetes_validate(manifest, py_tools)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    unknown = [line for line in output.splitlines() if "Couldn't find schema" in line]
    assert len(unknown) == sum(1 for o in ops.objects if o["kind"] in CRD_KINDS), output
    assert all(any(kind in line for kind in CRD_KINDS) for line in unknown), unknown
    assert output.count(" passed for resource ") == len(ops.objects) - len(unknown), output
    assert ops.kinds().count("Ingress") == 2


def test_helm_lint_strict_with_everything_on(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *OPS_VALUES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "prometheusRule.enabled=true", "--set", "metrics.enabled=false"], "needs metrics.enabled"),
        (["--set", "ingress.enabled=true"], "ingress.http.host is required"),
        (["--set", "gateway.enabled=true"], "gateway.parentRefs is required"),
        (["--set", "prometheusRule.alerts.errorRate.window=5 minutes"], "window"),
        (["--set", "ingress.http.hostx=a"], "hostx"),
    ],
)
def test_incomplete_values_fail_with_a_clear_message(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_everything_is_off_by_default(helm: Path, py_tools: Path) -> None:
    kinds = set(helm_template(helm, py_tools).kinds())
    assert not kinds & {"PrometheusRule", "Ingress", "HTTPRoute", "GRPCRoute"}


# ----------------------------------------------------------------------------------------------------
# the PrometheusRule


def test_prometheus_rule_object(ops: Rendered) -> None:
    rule = ops.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    # The operator's ruleSelector usually matches the release label, as the ServiceMonitor's does.
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(ops)
    assert set(rules) == ALERTS
    for alert in rules.values():
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(alert["annotations"])
    assert rules["ModelportHighErrorRate"]["for"] == "10m"
    assert "> 0.05" in rules["ModelportHighErrorRate"]["expr"]


def test_thresholds_and_alerts_come_from_values(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(
        helm, py_tools,
        "--set", "prometheusRule.enabled=true",
        "--set-json", "prometheusRule.alerts.queueTime.thresholdSeconds=0.25",
        "--set", "prometheusRule.alerts.queueTime.window=10m",
        "--set", "prometheusRule.alerts.podNotReady.enabled=false",
        "--set", "prometheusRule.metricSelector=service=\"mp\"",
    )
    rules = _rules(rendered)
    assert set(rules) == ALERTS - {"ModelportPodNotReady"}
    queue = rules["ModelportHighQueueTime"]["expr"]
    assert "> 0.25" in queue and "[10m]" in queue and 'nv_inference_queue_duration_us{service="mp"}' in queue


def test_promtool_accepts_the_rules(ops: Rendered, promtool: str, tmp_path: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(_rule_file(ops, tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_catches_a_broken_rule(ops: Rendered, promtool: str, tmp_path: Path) -> None:
    """The check has teeth: a misspelt field or bad PromQL fails it."""
    path = _rule_file(ops, tmp_path)
    good = path.read_text()
    for broken in (good.replace('"for"', '"fro"', 1), good.replace("sum by", "sum bye", 1)):
        path.write_text(broken)
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode != 0, broken


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    """One input series; the server's own metrics carry the labels its scrape gives them (SELECTOR)."""
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    if name != "kube_pod_status_ready":  # kube-state-metrics' series name the pod in their labels
        text = f"{SELECTOR},{text}"
    return {"series": f"{name}{{{text}}}", "values": values}


# Per minute: "bad" 100 successes and 20 backend failures (17% failed) and 200 ms queue time per request;
# "ok" 100 successes, 50 client cancellations (not errors) and 1 ms queue time; "idle" no traffic at all.
INPUT_SERIES = [
    _series("nv_inference_request_success", "0+100x40", model="bad", version="1", pod="p1"),
    _series("nv_inference_request_failure", "0+20x40", model="bad", version="1", pod="p1", reason="BACKEND"),
    _series("nv_inference_queue_duration_us", "0+20000000x40", model="bad", version="1", pod="p1"),
    _series("nv_inference_request_success", "0+100x40", model="ok", version="1", pod="p1"),
    _series("nv_inference_request_failure", "0+50x40", model="ok", version="1", pod="p1", reason="CANCELED"),
    _series("nv_inference_request_failure", "0x40", model="ok", version="1", pod="p1", reason="BACKEND"),
    _series("nv_inference_queue_duration_us", "0+100000x40", model="ok", version="1", pod="p1"),
    _series("nv_inference_request_success", "0x40", model="idle", version="1", pod="p1"),
    _series("nv_inference_request_failure", "0x40", model="idle", version="1", pod="p1", reason="BACKEND"),
    _series("nv_inference_queue_duration_us", "0x40", model="idle", version="1", pod="p1"),
    _series("modelport_model_state", "1x40", model="broken", version="1", pod="p1", state="UNAVAILABLE"),
    _series("modelport_model_state", "0x40", model="ok", version="1", pod="p1", state="UNAVAILABLE"),
    _series("kube_pod_status_ready", "0x40", namespace=NAMESPACE, pod=f"{FULLNAME}-7d4b9c8f6d-x2k9q",
            condition="true"),
    _series("kube_pod_status_ready", "1x40", namespace=NAMESPACE, pod=f"{FULLNAME}-7d4b9c8f6d-a8b7c",
            condition="true"),
    # Not the server's pods: the helm test pod, and a pod of the same name in another namespace.
    _series("kube_pod_status_ready", "0x40", namespace=NAMESPACE, pod=f"{FULLNAME}-test-health",
            condition="true"),
    _series("kube_pod_status_ready", "0x40", namespace="other", pod=f"{FULLNAME}-7d4b9c8f6d-x2k9q",
            condition="true"),
]


def _pending(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def test_alerts_fire_on_the_conditions_they_name(ops: Rendered, promtool: str, tmp_path: Path) -> None:
    """promtool test rules: each alert fires for the bad series only, only after its `for`, and says what."""
    rules = _rule_file(ops, tmp_path)
    descriptions = {name: rule["annotations"]["description"] for name, rule in _rules(ops).items()}

    def fired(alert: str, at: str, summary: str, **labels: str) -> dict[str, Any]:
        annotations = {"summary": summary, "description": descriptions[alert]}
        expected = {"exp_labels": {"namespace": NAMESPACE, **labels}, "exp_annotations": annotations}
        return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}

    pod = f"{FULLNAME}-7d4b9c8f6d-x2k9q"
    cases = [
        _pending("ModelportHighErrorRate", "9m"),  # the rate has a value from 1m on; then 10m `for`
        fired("ModelportHighErrorRate", "20m", "Model bad version 1 fails 16.67% of its requests",
              severity="critical", model="bad", version="1"),
        fired("ModelportHighQueueTime", "20m", "Requests to model bad version 1 wait 200ms in the queue",
              severity="warning", model="bad", version="1"),
        _pending("ModelportModelUnavailable", "4m"),
        fired("ModelportModelUnavailable", "10m", "Model broken version 1 is UNAVAILABLE on p1",
              severity="critical", model="broken", version="1", pod="p1"),
        _pending("ModelportPodNotReady", "14m"),
        fired("ModelportPodNotReady", "20m", f"Pod {NAMESPACE}/{pod} is not ready", severity="warning",
              pod=pod),
    ]
    test_file = tmp_path / "rules_test.json"
    test_file.write_text(json.dumps({
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": INPUT_SERIES, "alert_rule_test": cases}],
    }))
    result = subprocess.run([promtool, "test", "rules", test_file.name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_read_metrics_a_real_server_exposes(ops: Rendered, tmp_path: Path) -> None:
    """Every modelport metric the alerts query is on a real server's /metrics after one request."""
    exprs = " ".join(rule["expr"] for rule in _rules(ops).values())
    queried = set(re.findall(r"\b((?:nv|modelport)_[a-z_]+)\{", exprs))
    assert queried == {"nv_inference_request_failure", "nv_inference_request_success",
                       "nv_inference_queue_duration_us", "modelport_model_state"}
    repo = tmp_path / "repo"
    repo.mkdir()
    small_models.write_add_sub(repo)
    port = free_port()
    args = ["--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}"]
    with running_server(repo, tmp_path / "server.log", args) as server:
        client = httpclient.InferenceServerClient(server.url)
        try:
            inputs = [httpclient.InferInput(name, [1, 16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
            client.infer("add_sub", inputs)
        finally:
            client.close()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{HOST}:{port}/metrics", timeout=10) as response:
            exposition = response.read().decode()
    exposed = {line.split("{", 1)[0] for line in exposition.splitlines() if not line.startswith("#")}
    assert queried <= exposed, queried - exposed
    assert 'reason="CANCELED"' in exposition  # the error-rate alert leaves this reason out by name


# ----------------------------------------------------------------------------------------------------
# Ingress and Gateway API routes


def test_ingresses_for_http_and_grpc(ops: Rendered) -> None:
    ingresses = {i["metadata"]["name"]: i for i in ops.all("Ingress")}
    assert set(ingresses) == {f"{FULLNAME}-http", f"{FULLNAME}-grpc"}
    service = ops.one("Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    for protocol, host in (("http", "modelport.example.com"), ("grpc", "grpc.modelport.example.com")):
        ingress = ingresses[f"{FULLNAME}-{protocol}"]
        assert ingress["spec"]["ingressClassName"] == "nginx"
        (rule,) = ingress["spec"]["rules"]
        assert rule["host"] == host
        (path,) = rule["http"]["paths"]
        assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": protocol}}
    # gRPC: ingress-nginx speaks plaintext HTTP/2 to the pods, which the Service's port declares.
    grpc = ingresses[f"{FULLNAME}-grpc"]
    assert grpc["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}
    assert grpc["spec"]["tls"] == [{"hosts": ["grpc.modelport.example.com"], "secretName": "grpc-tls"}]
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert "annotations" not in ingresses[f"{FULLNAME}-http"]["metadata"]
    assert "tls" not in ingresses[f"{FULLNAME}-http"]["spec"]


def test_gateway_routes(ops: Rendered) -> None:
    service = ops.one("Service")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    parent = [{"name": "public", "namespace": "gateway-system"}]
    http, grpc = ops.one("HTTPRoute"), ops.one("GRPCRoute")
    for route in (http, grpc):
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
        assert route["spec"]["parentRefs"] == parent
    (http_rule,) = http["spec"]["rules"]
    assert http_rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert http_rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": ports["http"]}]
    assert "hostnames" not in http["spec"]
    (grpc_rule,) = grpc["spec"]["rules"]
    assert grpc_rule == {"backendRefs": [{"name": service["metadata"]["name"], "port": ports["grpc"]}]}
    assert grpc["spec"]["hostnames"] == ["grpc.modelport.example.com"]


# ----------------------------------------------------------------------------------------------------
# the docs' account of startup


def test_no_document_says_the_models_load_before_the_port_opens() -> None:
    """The ports open first and /v2/health/ready waits for the models (tests/integration/test_startup.py)."""
    found = []
    for path in DOCUMENTS:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            matches = FALSE_STARTUP_CLAIMS.finditer(text)
            found.extend(f"{path.relative_to(REPO)}: {m.group(0)}" for m in matches)
    assert not found, found


@pytest.mark.parametrize(
    "claim",
    [
        "Models load before the HTTP port opens.",
        "(models load before the HTTP port opens)",
        "# The port opens once the models are loaded: give loading up to 10 minutes.",
    ],
)
def test_the_false_claim_check_recognises_the_old_wording(claim: str) -> None:
    assert FALSE_STARTUP_CLAIMS.search(claim)


def test_the_deploy_docs_say_what_happens() -> None:
    deploy_doc = (REPO / "docs" / "deploy.md").read_text()
    assert "ports open as soon as the process starts, before the models" in deploy_doc
    assert "/v2/health/ready only once the models are ready" in (CHART / "values.yaml").read_text()
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "/v2/health/ready turns true once the models are loaded" in notes
    runtime = (REPO / "deploy" / "kserve" / "servingruntime.yaml").read_text()
    assert "startupProbe" in runtime and "before the models load" in runtime
