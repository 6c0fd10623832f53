"""modelport_model_state: the state of every model version the repository knows, read at scrape time.

Triton's metric families describe the versions that serve; a version that failed to load has no
series there, so no alert could see it. This gauge has, for every version that is loading, serving
or failed, one sample per state (LOADING, READY, UNLOADING, UNAVAILABLE): 1 for the state it is in
and 0 for the others, so `modelport_model_state{state="UNAVAILABLE"} == 1` finds the failed ones.
What to report (and what to leave out, such as versions unloaded on purpose) is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE")

# (model, version, state) rows; version is "" for a model that failed before it had versions.
ModelStates = Callable[[], Iterable[tuple[str, str, str]]]


class ModelStateCollector(Collector):
    """The modelport_model_state gauge, from a function listing (model, version, state) rows."""

    def __init__(self, model_states: ModelStates) -> None:
        self._model_states = model_states

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "modelport_model_state",
            "Model version state: 1 for the state it is in (LOADING, READY, UNLOADING, UNAVAILABLE), else 0",
            labels=("model", "version", "state"),
        )
        for model, version, current in self._model_states():
            for state in STATES:
                family.add_metric([model, version, state], 1.0 if state == current else 0.0)
        yield family
