"""ServedModelBuilder: turns a configured model version into a ServedModel ready for requests.

A version gets its instances (one per placement, created in parallel on worker threads), its
warmup, its statistics and its scheduler; an ensemble version gets its composing models checked
and a scheduler that calls them through the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from modelport.backends.base import ModelInstance
from modelport.backends.devices import cpu_count
from modelport.backends.placement import place_instances
from modelport.backends.registry import BackendRegistry
from modelport.config.ensemble import composing_problems, inherited_labels
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.errors import InternalError, InvalidInput, ModelNotFound, ModelportError, ModelUnavailable
from modelport.observability.redaction import model_repository_of, repository_path
from modelport.observability.stats import ModelStats
from modelport.repository.configure import ConfiguredModel
from modelport.repository.records import ModelTable
from modelport.repository.served import ServedModel
from modelport.repository.warmup import build_samples, run_warmup
from modelport.scheduling.base import Scheduler
from modelport.scheduling.caching import with_response_cache
from modelport.scheduling.dynamic_batcher import DynamicBatcher
from modelport.scheduling.ensemble import EnsembleCore, EnsembleScheduler
from modelport.scheduling.instances import InstancePool
from modelport.scheduling.limited_pool import make_pool, register_instances
from modelport.scheduling.rate_limiter import RateLimiter
from modelport.scheduling.response_cache import ResponseCache
from modelport.scheduling.sequence_batcher import SequenceBatcher

log = logging.getLogger(__name__)


class ServedModelBuilder:
    """Builds the ServedModel of one version: instances, warmup, statistics, scheduler."""

    def __init__(
        self, settings: ServerSettings, backends: BackendRegistry, core: EnsembleCore, models: ModelTable
    ) -> None:
        self._backends = backends
        self._core = core
        self._models = models
        self._histograms = settings.allow_metrics and settings.metrics_histograms
        size = settings.response_cache_size
        self.response_cache = ResponseCache(size) if size else None  # one for every model, as in Triton
        # One for every model too: instances of different models compete for the same resources.
        limited = settings.rate_limit == "execution_count"
        self._rate_limiter = RateLimiter(settings.rate_limit_resources) if limited else None

    async def build(self, configured: ConfiguredModel, version: int, version_dir: Path) -> ServedModel:
        """A READY-to-serve version (warmed up); raises what failed, with nothing left running."""
        spec = configured.spec
        if spec.ensemble is not None:
            return self._build_ensemble(configured, version)
        samples = await asyncio.to_thread(build_samples, spec, version_dir.parent)
        pool = await self._create_pool(spec, version, version_dir)
        try:
            await run_warmup(spec, version, pool, samples)
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
        stats = self._new_stats(spec)
        scheduler: Scheduler
        if spec.sequence_batching is not None:
            scheduler = SequenceBatcher(spec, pool, stats)
        else:
            batcher = DynamicBatcher(spec, pool, stats)
            scheduler = with_response_cache(batcher, spec, version, stats, self.response_cache)
        return ServedModel(spec, version, scheduler, configured.labels, stats)

    def _new_stats(self, spec: ModelSpec) -> ModelStats:
        return ModelStats(histograms=self._histograms, response_cache=spec.response_cache is not None)

    async def _create_pool(self, spec: ModelSpec, version: int, version_dir: Path) -> InstancePool:
        model_path = version_dir / spec.default_model_filename
        if not model_path.exists():
            log.error("model '%s' version %d: no model file at %s", spec.name, version, model_path)
            shown = repository_path(model_path, model_repository_of(model_path))
            raise ModelUnavailable(f"unable to find '{shown}' for model '{spec.name}' version {version}")
        backend = self._backends.get(spec.backend)
        spots = place_instances(spec.instance_groups, cpu_count())
        tickets = register_instances(self._rate_limiter, spec, spots)  # InvalidInput: too few resources
        results = await asyncio.gather(
            *(asyncio.to_thread(backend.create_instance, spec, model_path, p) for p in spots),
            return_exceptions=True,
        )
        instances: list[ModelInstance] = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for instance in instances:
                with contextlib.suppress(Exception):
                    instance.close()
            if self._rate_limiter is not None and tickets is not None:
                self._rate_limiter.unregister(tickets)
            error = errors[0]
            if isinstance(error, ModelportError):
                raise error
            raise InternalError(f"{type(error).__name__}: {error}") from error
        return make_pool(spec.name, instances, f"{spec.name}-v{version}", self._rate_limiter, tickets)

    def _build_ensemble(self, configured: ConfiguredModel, version: int) -> ServedModel:
        """An ensemble version, checked against its composing models (which must be serving)."""
        spec = configured.spec
        assert spec.ensemble is not None
        composing: list[ServedModel] = []
        for step in spec.ensemble.steps:
            wanted = "" if step.model_version < 0 else str(step.model_version)
            try:
                composing.append(self._models.lookup(step.model_name, wanted))
            except (ModelNotFound, ModelUnavailable) as exc:
                raise InvalidInput(f"ensemble '{spec.name}', {step.label}: {exc.message}") from None
        problems = composing_problems(spec, [m.spec for m in composing])
        if problems:
            raise InvalidInput(f"invalid ensemble '{spec.name}': " + "; ".join(problems))
        labels = inherited_labels(spec, configured.labels, [m.labels for m in composing])
        stats = self._new_stats(spec)
        scheduler = with_response_cache(
            EnsembleScheduler(spec, self._core, stats), spec, version, stats, self.response_cache
        )
        return ServedModel(spec, version, scheduler, labels, stats)
