"""Inference request and response records shared by every frontend, the core and the backends.

Tensors are numpy arrays, usually views of the request body; nothing here copies data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


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
