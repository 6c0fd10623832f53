"""The two interfaces every backend implements: a Backend factory and its ModelInstances."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from modelport.config.settings import ServerSettings
from modelport.config.spec import InstanceGroupSpec, ModelSpec
from modelport.errors import ModelportError
from modelport.protocol import ModelConfigProto
from modelport.tensor.records import InferRequest

# One entry per request: its outputs by name (with the request's own batch dimension), or its error.
ExecuteResult = list[dict[str, np.ndarray] | ModelportError]


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
    """One loaded copy of one model version; executes one batch at a time, off the event loop."""

    def execute(self, requests: Sequence[InferRequest]) -> ExecuteResult:
        """Run validated requests as one batch; one result per request, in order."""
        ...

    def close(self) -> None:
        """Release the instance's resources."""
        ...


class Backend(Protocol):
    """A factory for instances of one kind of model file."""

    name: str

    def auto_complete(self, config: ModelConfigProto, model_path: Path, settings: ServerSettings) -> None:
        """Fill missing inputs, outputs and batching details of `config` from the model file."""
        ...

    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> ModelInstance:
        """Load the model file into a new instance (called on a worker thread)."""
        ...
