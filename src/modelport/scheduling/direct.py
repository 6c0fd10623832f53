"""DirectScheduler: no batching; each request runs alone on the next idle instance, in arrival order."""

from __future__ import annotations

import asyncio

from modelport.errors import ModelportError, ModelUnavailable
from modelport.scheduling.base import Outputs
from modelport.scheduling.instances import InstancePool
from modelport.tensor.records import InferRequest


class DirectScheduler:
    """Triton's default scheduler: FIFO to free instances, up to one execution per instance."""

    def __init__(self, model_name: str, pool: InstancePool) -> None:
        self._model = model_name
        self._pool = pool
        self._stopped = False

    async def submit(self, request: InferRequest) -> Outputs:
        if self._stopped:
            raise ModelUnavailable(f"model '{self._model}' is unloading")
        instance = await self._pool.acquire()
        (result,) = await self._pool.execute(instance, [request])
        if isinstance(result, ModelportError):
            raise result
        return result

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.to_thread(self._pool.close)
