"""Builds a model version's scheduler from its config."""

from __future__ import annotations

from modelport.config.spec import ModelSpec
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Scheduler
from modelport.scheduling.dynamic_batcher import DynamicBatcher
from modelport.scheduling.instances import InstancePool


def create_scheduler(spec: ModelSpec, pool: InstancePool, stats: ModelStats) -> Scheduler:
    """The dynamic batcher; without `dynamic_batching` it runs one request per execution."""
    return DynamicBatcher(spec, pool, stats)
