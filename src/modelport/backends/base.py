"""The two interfaces every backend implements: a Backend factory and its ModelInstances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from modelport.config.settings import ServerSettings
from modelport.config.spec import InstanceGroupSpec, ModelSpec
from modelport.errors import ModelportError
from modelport.observability.stats import ExecutionTiming
from modelport.protocol import ModelConfigProto
from modelport.tensor.records import InferRequest

# One entry per request: its outputs by name (with the request's own batch dimension), or its error.
ExecuteResult = list[dict[str, np.ndarray] | ModelportError]


@dataclass(slots=True)
class Execution:
    """What one execution of a batch produced: one result per request, in order, and its timing.

    `timing` splits the execution into gathering inputs (`input_ns`), running the model
    (`infer_ns`) and handing outputs back (`output_ns`). The rule for a backend that does not
    tell these phases apart, and for an execution that failed before its phases ended: the whole
    call counts as `infer_ns` (see `whole_call`).
    """

    results: ExecuteResult
    timing: ExecutionTiming

    @classmethod
    def whole_call(cls, results: ExecuteResult, start_ns: int) -> Execution:
        """`results` with the time since `start_ns` (a `time.perf_counter_ns()` reading) as infer_ns."""
        return cls(results, ExecutionTiming(infer_ns=time.perf_counter_ns() - start_ns))


@dataclass(frozen=True, slots=True)
class InstancePlacement:
    """Where one instance runs: its group, its index in the model, and its device."""

    group: InstanceGroupSpec
    index: int
    device_id: int | None  # None for CPU
    threads: int  # compute threads this instance may use

    @property
    def name(self) -> str:
        return f"{self.group.name}_{self.index}"


class ModelInstance(Protocol):
    """One loaded copy of one model version; executes one batch at a time, off the event loop.

    An instance may also set `may_run_inline = True` when its executions can run on the event
    loop: no blocking waits (devices, processes, calls back into the server), so that its CPU
    time is its duration. The instance pool then runs its tiny executions there.
    """

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        """Run validated requests as one batch: one result per request, in order, and the timing.

        A failure of the whole batch is returned as an error for each request, not raised.
        """
        ...

    def close(self) -> None:
        """Release the instance's resources."""
        ...

    def abort(self) -> bool:
        """End a running execution at once, from another thread, if this instance can.

        A model process is killed (the execution fails; the instance then closes as usual): True.
        Code running on the instance's own thread cannot be stopped: False, and it is left running.
        """
        ...


class Backend(Protocol):
    """A factory for instances of one kind of model file."""

    name: str

    def auto_complete(self, config: ModelConfigProto, model_path: Path, settings: ServerSettings) -> None:
        """Fill missing inputs, outputs and batching details of `config` from the model file."""
        ...

    def usable_gpus(self) -> int:
        """GPUs this backend can run instances on here (KIND_AUTO takes them; 0: it means KIND_CPU)."""
        ...

    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> ModelInstance:
        """Load the model file into a new instance (called on a worker thread)."""
        ...
