"""Inference request and response records shared by every frontend, the core and the backends.

Tensors are numpy arrays, usually views of the request body; nothing here copies data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelport.errors import ModelportError

Parameters = dict[str, Any]


class ResponseSink(Protocol):
    """Where a decoupled model sends the responses of one request; callable from any thread."""

    def send(self, outputs: dict[str, np.ndarray] | None, error: ModelportError | None, final: bool) -> None:
        """One response (outputs or error; both None for a bare FINAL flag); `final` ends the request."""
        ...

    def is_cancelled(self) -> bool:
        """True once nobody waits for more responses."""
        ...


@dataclass(slots=True)
class InferInput:
    """One input tensor: `data` already has `shape` (BYTES tensors are object arrays of bytes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, and how it wants it back."""

    name: str
    binary: bool | None = None  # None: follow the request's binary_data_output
    classification: int = 0
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request, before and after validation against the model config."""

    model_name: str
    model_version: str = ""  # "" = the version the policy picks
    id: str = ""
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: Parameters = field(default_factory=dict)
    binary_data_output: bool = False
    # Filled in by validation: the batch size this request contributes (1 for non-batching models).
    batch_size: int = 1
    # Set by the core for decoupled models: where the model's responses go (see InferenceServer.infer_stream).
    response_sink: ResponseSink | None = None
    # Set by the core for sampled requests when tracing is on (observability.tracing.RequestTrace).
    trace: Any = None
    # Set by the frontend when inputs come from shared memory (shm.RequestRegions): released by the
    # core when the request ends, so an unregister of those regions waits for it.
    input_regions: Any = None


@dataclass(slots=True)
class InferOutput:
    """One output tensor of a response."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """The result of one request."""

    model_name: str
    model_version: str
    id: str = ""
    outputs: list[InferOutput] = field(default_factory=list)
    parameters: Parameters = field(default_factory=dict)
