"""The Scheduler interface every per-model scheduler implements."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np

from modelport.clock import Deadline
from modelport.tensor.records import InferRequest

Outputs = dict[str, np.ndarray]


class Scheduler(Protocol):
    """Admits validated requests for one model version and resolves each with its outputs."""

    async def submit(self, request: InferRequest) -> Outputs:
        """Queue `request`, wait for its execution, and return its outputs (or raise its error)."""
        ...

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Stop admitting; fail what is still queued; let running work finish until `deadline` (None:
        however long it takes), then fail it too; release the instances without waiting past it."""
        ...


def resolve(future: asyncio.Future[Any], result: Any) -> None:
    """Answer `future` with `result` (an exception is raised to its waiter), unless it is done already."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
