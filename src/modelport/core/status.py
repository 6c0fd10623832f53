"""The status page's one JSON document: models, versions, traffic and cumulative statistics, read now.

Everything is read from what the server keeps anyway (the repository index, the traffic policies,
each version's ModelStats) at the moment of the request: no background work, nothing recorded for it.
Figures are cumulative counters and the server's monotonic time; the page turns two snapshots into
rates, percentiles and busy fractions, so the server keeps no history for it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelport import __version__
from modelport.errors import ModelportError
from modelport.observability.stats import LATENCY_BUCKETS_NS, ModelStats
from modelport.repository.served import ServedModel

if TYPE_CHECKING:
    from modelport.core.server import InferenceServer


def status_document(server: InferenceServer) -> dict[str, Any]:
    """The page's snapshot: every model of the repository index with its versions and served figures."""
    models: dict[str, dict[str, Any]] = {}
    for entry in server.repository_index():
        model = models.setdefault(entry.name, {"name": entry.name, "versions": [], "traffic": None})
        if entry.version or entry.state is not None:
            state = entry.state.value if entry.state is not None else ""
            model["versions"].append({"version": entry.version, "state": state, "reason": entry.reason})
    served = server.served_models()
    for version in served:
        model = models.setdefault(version.name, {"name": version.name, "versions": [], "traffic": None})
        model.setdefault("served", []).append(_served_figures(version))
    for name, model in models.items():
        if "served" in model:
            model["traffic"] = _traffic(server, name)
    return {
        "server": {
            "version": __version__,
            "ready": server.is_ready(),
            "inflight": server.inflight,
        },
        "time_ns": time.monotonic_ns(),
        "latency_bounds_ns": LATENCY_BUCKETS_NS,
        "histograms": any(version.stats.histograms for version in served),
        "models": list(models.values()),
    }


def _traffic(server: InferenceServer, name: str) -> dict[str, Any] | None:
    try:
        policy = server.model_traffic(name)
    except ModelportError:  # unloaded between the index and here
        return None
    return {key: policy[key] for key in ("weights", "pin", "source")}


def _served_figures(model: ServedModel) -> dict[str, Any]:
    """One READY version's configuration at a glance and its cumulative counters."""
    stats = model.stats
    spec = model.spec
    return {
        "version": str(model.version),
        "platform": spec.metadata_platform,
        "max_batch_size": spec.max_batch_size,
        "instances": spec.instance_count,
        "inflight": model.inflight.count,
        "pending": max(stats.pending, 0),
        "success": stats.success.count,
        "success_ns": stats.success.ns,
        "fail": stats.fail.count,
        "failures": dict(stats.failures_by_reason),
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "compute_ns": _compute_ns(stats),
        "batches": {str(size): b.compute_infer.count for size, b in sorted(stats.batches.items())},
        "request_latency": list(stats.request_latency.counts) if stats.histograms else None,
    }


def _compute_ns(stats: ModelStats) -> int:
    """Time the version's instances spent executing batches (per execution, not per request)."""
    return sum(
        b.compute_input.ns + b.compute_infer.ns + b.compute_output.ns for b in stats.batches.values()
    )
