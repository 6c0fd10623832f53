"""InstancePool: a model version's instances, each with its own worker thread, handed out when idle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from modelport.backends.base import ExecuteResult, ModelInstance
from modelport.observability.stats import ExecutionTiming
from modelport.tensor.records import InferRequest


class InstancePool:
    """Idle instances wait in a queue; a batch runs on its instance's own thread."""

    def __init__(self, instances: Sequence[ModelInstance], thread_name: str) -> None:
        self._instances = list(instances)
        self._executors = {
            id(inst): ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{thread_name}-{i}")
            for i, inst in enumerate(self._instances)
        }
        self._idle: asyncio.Queue[ModelInstance] = asyncio.Queue()
        for inst in self._instances:
            self._idle.put_nowait(inst)

    @property
    def size(self) -> int:
        return len(self._instances)

    @property
    def idle_count(self) -> int:
        return self._idle.qsize()

    async def acquire(self) -> ModelInstance:
        """Wait for an idle instance."""
        return await self._idle.get()

    def try_acquire(self) -> ModelInstance | None:
        """An idle instance, or None at once when all are busy."""
        try:
            return self._idle.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def execute(
        self, instance: ModelInstance, requests: Sequence[InferRequest]
    ) -> tuple[ExecuteResult, ExecutionTiming]:
        """Run one batch on an acquired `instance`'s thread; the instance turns idle when it finishes.

        The instance is released when the execution really ends, even if the awaiting caller is
        cancelled first, so an instance never runs two batches at once.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executors[id(instance)], _timed_execute, instance, requests)
        future.add_done_callback(lambda _: self._idle.put_nowait(instance))
        return await asyncio.shield(future)

    def close(self) -> None:
        """Close every instance and stop its thread (waits for a running batch to finish)."""
        for inst in self._instances:
            executor = self._executors[id(inst)]
            executor.submit(inst.close).result()
            executor.shutdown(wait=True)
        self._instances.clear()


def _timed_execute(
    instance: ModelInstance, requests: Sequence[InferRequest]
) -> tuple[ExecuteResult, ExecutionTiming]:
    """Execute and time a batch; instances that time their phases expose `last_timing`."""
    start = time.perf_counter_ns()
    results = instance.execute(requests)
    elapsed = time.perf_counter_ns() - start
    timing = getattr(instance, "last_timing", None)
    return results, timing if isinstance(timing, ExecutionTiming) else ExecutionTiming(infer_ns=elapsed)
