"""CachingScheduler: answers a request from the response cache, or hands it to the model's own
scheduler and keeps a copy of the outputs (Triton's response cache, in front of any scheduler).

It is built only for a model that enables `response_cache` when the server has a cache
(`with_response_cache`); every other model keeps its scheduler as it is, with no work added per
request. Statistics follow Triton's: a hit is a success with no execution (inference_count,
execution_count and compute_* do not move); a miss adds its lookup and insertion time to the
request's, unless another request stored the same key meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from modelport.clock import Clock, Deadline, MonotonicClock
from modelport.config.response_cache import TTL_PARAMETER, unused_ttl
from modelport.config.spec import ModelSpec
from modelport.observability.stats import ModelStats
from modelport.scheduling.base import Outputs, Scheduler
from modelport.scheduling.cache_key import key_prefix, request_key
from modelport.scheduling.response_cache import InsertResult, ResponseCache
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)
# Inputs larger than this are hashed on a worker thread (hashlib lets go of the GIL), so that a big
# request does not hold the event loop for milliseconds.
HASH_OFF_LOOP_BYTES = 1 << 20


def with_response_cache(
    scheduler: Scheduler, spec: ModelSpec, version: int, stats: ModelStats, cache: ResponseCache | None
) -> Scheduler:
    """`scheduler`, behind the response cache when the model enables it and the server has one."""
    if unused_ttl(spec.proto):
        log.warning(
            "model '%s': parameter '%s' has no effect without response_cache { enable: true }",
            spec.name, TTL_PARAMETER,
        )
    if spec.response_cache is None:
        return scheduler
    if cache is None:
        log.warning(
            "model '%s' enables response_cache, but the server has no response cache "
            "(--cache-config local,size=<bytes>): its responses are not cached",
            spec.name,
        )
        return scheduler
    return CachingScheduler(scheduler, cache, spec, version, stats)


class CachingScheduler:
    """One model version's requests, looked up in the cache before they reach `inner`."""

    def __init__(
        self,
        inner: Scheduler,
        cache: ResponseCache,
        spec: ModelSpec,
        version: int,
        stats: ModelStats,
        clock: Clock | None = None,
    ) -> None:
        assert spec.response_cache is not None
        self._inner = inner
        self._cache = cache
        self._stats = stats
        self._clock = clock or MonotonicClock()
        self._model = (spec.name, version)
        self._owner = cache.new_owner()
        self._prefix = key_prefix(spec.name, version, self._owner)
        self._ttl_ns = spec.response_cache.ttl_ns
        self._all_outputs = tuple(t.name for t in spec.outputs)
        self._told_too_large = False

    async def submit(self, request: InferRequest) -> Outputs:
        clock = self._clock
        start = clock.now_ns()
        if sum(i.data.nbytes for i in request.inputs) > HASH_OFF_LOOP_BYTES:
            key = await asyncio.to_thread(request_key, self._prefix, request)
        else:
            key = request_key(self._prefix, request)
        lookup_start = clock.now_ns()
        cached = self._cache.lookup(key)
        lookup_end = clock.now_ns()
        lookup_ns = lookup_end - lookup_start
        if cached is not None:
            self._stats.record_cache_hit(lookup_end - start, lookup_start - start, lookup_ns)
            return dict(cached)
        outputs = await self._inner.submit(request)
        kept = self._response_outputs(request, outputs)
        if kept is None:  # an output is missing: the core answers with its error, nothing is stored
            return outputs
        insert_start = clock.now_ns()
        result = self._cache.insert(key, kept, self._owner, self._ttl_ns)
        if result is not InsertResult.EXISTS:
            self._stats.record_cache_miss(lookup_ns + clock.now_ns() - insert_start)
        if result is InsertResult.TOO_LARGE:
            self._too_large()
        return outputs

    async def stop(self, deadline: Deadline | None = None) -> None:
        await self._inner.stop(deadline)
        self._cache.purge(self._owner)

    def _response_outputs(self, request: InferRequest, outputs: Outputs) -> Outputs | None:
        """The outputs the response carries (those asked for, else all the model's), or None when
        the model did not produce one of them."""
        names = [o.name for o in request.outputs] if request.outputs else self._all_outputs
        kept: Outputs = {}
        for name in names:
            data = outputs.get(name)
            if data is None:
                return None
            kept[name] = data
        return kept

    def _too_large(self) -> None:
        level = logging.DEBUG if self._told_too_large else logging.WARNING
        self._told_too_large = True
        log.log(
            level,
            "a response of model '%s' version %d is larger than the whole response cache (%d bytes): "
            "not cached",
            *self._model, self._cache.size,
        )
