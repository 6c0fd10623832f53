"""ServedModel: one loaded version of one model, with its scheduler, ready to take requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelport.config.spec import ModelSpec
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Scheduler


@dataclass(slots=True, eq=False)
class ServedModel:
    """A READY model version; `inflight` counts requests currently using it."""

    spec: ModelSpec
    version: int
    scheduler: Scheduler
    labels: dict[str, list[str]] = field(default_factory=dict)
    stats: ModelStats = field(default_factory=ModelStats)
    inflight: int = 0

    @property
    def name(self) -> str:
        return self.spec.name
