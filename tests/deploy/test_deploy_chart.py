"""The Helm chart, rendered by the real helm binary and validated against Kubernetes 1.30's strict schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    CHART,
    REPO,
    Rendered,
    helm_template,
    kubernetes_validate,
    load_yaml_documents,
    run_helm,
)

VALUES_GPU = REPO / "deploy" / "helm" / "values-gpu.yaml"
VALUES_AUTOSCALING = REPO / "deploy" / "helm" / "values-autoscaling.yaml"

# name -> extra `helm template` arguments
SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "gpu": ["-f", str(VALUES_GPU), "--set", "image.tag=abc123"],
    "autoscaling": ["-f", str(VALUES_AUTOSCALING)],
    "gpu-autoscaling-s3": [
        "-f",
        str(VALUES_GPU),
        "-f",
        str(VALUES_AUTOSCALING),
        "--set",
        "modelRepository.source=s3",
        "--set",
        "modelRepository.s3.uri=s3://bucket/model_repository",
        "--set",
        "modelRepository.s3.region=eu-west-1",
        "--set",
        "modelRepository.s3.credentialsSecret=model-reader",
    ],
    "pvc": [
        "--set",
        "modelRepository.source=pvc",
        "--set",
        "modelRepository.pvc.create=true",
        "--set",
        "modelRepository.pvc.storageClassName=efs",
    ],
    "explicit-poll-off": [
        "--set",
        "server.modelControlMode=explicit",
        "--set",
        "server.loadModels={mobilenet_v2}",
        "--set",
        "metrics.enabled=false",
        "--set",
        "podDisruptionBudget.enabled=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "tests.enabled=false",
    ],
}

_cache: dict[str, Rendered] = {}


@pytest.fixture
def render(helm: Path, py_tools: Path) -> Any:
    def _render(scenario: str) -> Rendered:
        if scenario not in _cache:
            _cache[scenario] = helm_template(helm, py_tools, *SCENARIOS[scenario])
        return _cache[scenario]

    return _render


def _args(rendered: Rendered) -> list[str]:
    args: list[str] = rendered.server_container()["args"]
    return args


def _flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]
    assert len(values) == 1, f"{name} appears {len(values)} times in {args}"
    return values[0]


# ----------------------------------------------------------------------------------------------------
# lint and schema validation


@pytest.mark.parametrize(
    "values",
    [[], ["-f", str(VALUES_GPU)], ["-f", str(VALUES_AUTOSCALING)]],
    ids=["default", "gpu", "autoscaling"],
)
def test_helm_lint_strict(helm: Path, values: list[str]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_rendered_manifest_is_valid_kubernetes(
    scenario: str, render: Any, py_tools: Path, tmp_path: Path
) -> None:
    rendered = render(scenario)
    manifest = tmp_path / f"{scenario}.yaml"
    manifest.write_text(rendered.text)
    result = kubernetes_validate(manifest, py_tools)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Only the Prometheus operator's CRD has no schema in kubernetes-validate; everything else is checked.
    unknown = [line for line in output.splitlines() if "Couldn't find schema" in line]
    assert all("ServiceMonitor" in line for line in unknown), unknown
    assert output.count(" passed for resource ") == len(rendered.objects) - len(unknown), output


def test_validation_catches_a_broken_manifest(render: Any, py_tools: Path, tmp_path: Path) -> None:
    """The validator is strict: a misspelt field fails (guards against a silently permissive setup)."""
    broken = render("default").text.replace(
        "containerPort: 8000", "containerPort: 8000\n              protocl: TCP"
    )
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(broken)
    result = kubernetes_validate(manifest, py_tools)
    assert result.returncode != 0
    assert "protocl" in result.stdout + result.stderr


def test_values_schema_rejects_bad_values(helm: Path) -> None:
    cases = {
        ("--set", "typo=1"): "typo",
        ("--set", "server.modelControlMode=sometimes"): "modelControlMode",
        ("--set", "gpu.count=0"): "count",
        ("--set", "modelRepository.source=ftp"): "source",
        ("--set", "probes.readiness.path=v2/health/ready"): "path",
    }
    for args, needle in cases.items():
        result = run_helm(helm, "template", "rel", str(CHART), *args)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "modelRepository.source=s3"], "modelRepository.s3.uri is required"),
        (["--set", "modelRepository.source=pvc"], "existingClaim"),
        (["--set", "server.loadModels={a}"], "modelControlMode=explicit"),
        (["--set", "terminationGracePeriodSeconds=30"], "must exceed"),
        (
            ["--set", "autoscaling.enabled=true", "--set", "autoscaling.targetCPUUtilizationPercentage=null"],
            "needs a metric",
        ),
        (["--set", "podDisruptionBudget.minAvailable=1"], "exactly one"),
        (
            ["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
            "metrics.enabled",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_chart_packages(helm: Path, tmp_path: Path) -> None:
    result = run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "modelport-0.1.0.tgz").exists()


# ----------------------------------------------------------------------------------------------------
# what the default render contains


def test_default_objects(render: Any) -> None:
    rendered = render("default")
    kinds = ["Deployment", "Pod", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    assert rendered.kinds() == kinds  # the Secret holds the restricted APIs' key (test_deploy_chart_security)
    assert rendered.deployment()["spec"]["replicas"] == 1
    test_pod = rendered.one("Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # The Service must not select the helm-test pod.
    selector = rendered.one("Service")["spec"]["selector"]
    assert not selector.items() <= test_pod["metadata"]["labels"].items()


def test_server_args_and_ports(render: Any) -> None:
    rendered = render("default")
    container = rendered.server_container()
    assert container["command"] == ["modelport"]
    args = _args(rendered)
    assert args[0] == "serve"
    assert _flag(args, "--model-repository") == "/models"
    assert _flag(args, "--model-control-mode") == "none"
    assert _flag(args, "--http-port") == "8000"
    assert _flag(args, "--grpc-port") == "8001"
    assert _flag(args, "--metrics-port") == "8002"
    assert _flag(args, "--strict-readiness") == "true"
    assert _flag(args, "--exit-timeout-secs") == "30"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    service_ports = {
        p["name"]: (p["port"], p["targetPort"]) for p in rendered.one("Service")["spec"]["ports"]
    }
    assert service_ports == {"http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    assert container["image"] == "modelport:0.1.0"


def test_probes(render: Any) -> None:
    container = render("default").server_container()
    startup, liveness, readiness = (container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe"))
    assert liveness["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert readiness["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert startup["httpGet"]["port"] == "http"
    # Slow model loads: the startup probe allows minutes before liveness takes over.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert liveness["periodSeconds"] * liveness["failureThreshold"] < 120


def test_termination_grace_exceeds_the_drain_time(render: Any, helm: Path, py_tools: Path) -> None:
    rendered = render("default")
    grace = rendered.pod_spec()["terminationGracePeriodSeconds"]
    exit_timeout = float(_flag(_args(rendered), "--exit-timeout-secs"))
    pre_stop = int(rendered.server_container()["lifecycle"]["preStop"]["exec"]["command"][1])
    assert grace > exit_timeout + pre_stop
    longer = helm_template(helm, py_tools, "--set", "server.exitTimeoutSecs=120")
    assert _flag(_args(longer), "--exit-timeout-secs") == "120"
    assert longer.pod_spec()["terminationGracePeriodSeconds"] > 120 + pre_stop
    explicit = helm_template(helm, py_tools, "--set", "terminationGracePeriodSeconds=90")
    assert explicit.pod_spec()["terminationGracePeriodSeconds"] == 90


def test_security_defaults(render: Any) -> None:
    rendered = render("default")
    pod = rendered.pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    container = rendered.server_container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= mounts
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert "tolerations" not in pod and "nodeSelector" not in pod


# ----------------------------------------------------------------------------------------------------
# GPU, autoscaling, model sources


def test_gpu_values(render: Any) -> None:
    rendered = render("gpu")
    container = rendered.server_container()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "modelport:abc123-gpu"
    pod = rendered.pod_spec()
    assert pod["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "nodeAffinity" in pod["affinity"]
    assert rendered.deployment()["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # Models read their GPU configuration (configs/gpu.pbtxt; the example classifier ships one).
    assert "--model-config-name=gpu" in container["args"]


def test_gpu_count_and_resource_name_are_configurable(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(
        helm,
        py_tools,
        "--set",
        "gpu.enabled=true",
        "--set",
        "gpu.count=2",
        "--set",
        "gpu.runtimeClassName=nvidia",
    )
    assert rendered.server_container()["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert rendered.pod_spec()["runtimeClassName"] == "nvidia"
    # The default toleration for the GPU taint applies without a values file.
    assert rendered.pod_spec()["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_autoscaling(render: Any) -> None:
    rendered = render("autoscaling")
    assert "replicas" not in rendered.deployment()["spec"], "the HPA owns the replica count"
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": rendered.deployment()["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "nv_inference_queue_duration_us_per_request"
    assert metrics["Pods"]["pods"]["target"] == {"type": "AverageValue", "averageValue": "20000"}
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == rendered.one("Service")["spec"]["selector"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_prometheus_adapter_rule_serves_the_hpa_metric(render: Any, py_tools: Path) -> None:
    adapter = load_yaml_documents(
        (REPO / "deploy/helm/prometheus-adapter-values.yaml").read_text(), py_tools
    )[0]
    rule = adapter["rules"]["custom"][0]
    hpa = render("autoscaling").one("HorizontalPodAutoscaler")
    pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert rule["name"]["as"] == pods_metric["pods"]["metric"]["name"]
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_gpu_utilization_autoscaling_metric_has_an_adapter_rule(helm: Path, py_tools: Path) -> None:
    rendered = helm_template(
        helm, py_tools, "-f", str(VALUES_GPU), "--set", "autoscaling.enabled=true",
        "--set", "autoscaling.targetCPUUtilizationPercentage=null",
        "--set", "autoscaling.gpuUtilization.enabled=true",
    )  # fmt: skip
    (metric,) = rendered.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "0.7"}
    adapter_values = (REPO / "deploy/helm/prometheus-adapter-values.yaml").read_text()
    adapter = load_yaml_documents(adapter_values, py_tools)[0]
    served = {rule["name"]["as"]: rule for rule in adapter["rules"]["custom"]}
    rule = served[metric["pods"]["metric"]["name"]]
    assert "nv_gpu_utilization" in rule["seriesQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]


def test_models_from_s3(render: Any) -> None:
    rendered = render("gpu-autoscaling-s3")
    pod = rendered.pod_spec()
    (init,) = pod["initContainers"]
    assert init["command"] == ["aws"]
    assert init["args"][:4] == ["s3", "sync", "s3://bucket/model_repository", "/models"]
    assert init["envFrom"] == [{"secretRef": {"name": "model-reader"}}]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in init["env"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["models"]
    mounts = {m["name"]: m for m in rendered.server_container()["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
    assert rendered.server_container()["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_models_from_a_pvc(render: Any) -> None:
    rendered = render("pvc")
    pvc = rendered.one("PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "efs"
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mounts = {m["name"]: m for m in rendered.server_container()["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True


def test_explicit_mode_and_switches(render: Any) -> None:
    rendered = render("explicit-poll-off")
    args = _args(rendered)
    assert _flag(args, "--model-control-mode") == "explicit"
    assert _flag(args, "--load-model") == "mobilenet_v2"
    assert _flag(args, "--allow-metrics") == "false"
    assert "metrics" not in {p["name"] for p in rendered.server_container()["ports"]}
    assert "prometheus.io/scrape" not in str(rendered.deployment()["spec"]["template"]["metadata"])
    assert rendered.kinds() == ["Deployment", "Secret", "Service"]
    assert rendered.pod_spec()["serviceAccountName"] == "default"


def test_release_name_containing_the_chart_name_is_used_as_is(helm: Path, py_tools: Path) -> None:
    """`make port-forward` assumes this naming (SERVICE_NAME in the Makefile)."""
    rendered = helm_template(helm, py_tools, release="modelport")
    assert rendered.one("Service")["metadata"]["name"] == "modelport"
