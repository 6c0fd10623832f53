"""In-memory stand-ins: a ModelInstance that echoes its input and records the batches it ran."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from modelport.backends.base import ExecuteResult, Execution
from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import ModelSpec, build_spec
from modelport.errors import InternalError
from modelport.tensor.records import InferInput, InferRequest


class EchoInstance:
    """Returns each request's first input as OUTPUT0; optionally blocks until `gate` is set."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.batches: list[list[int]] = []  # batch sizes of the requests of each execution
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        start = time.perf_counter_ns()
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None and not self.gate.wait(timeout=10):
                raise TimeoutError("test gate was never opened")
            self.batches.append([r.batch_size for r in requests])
            results: ExecuteResult = [{"OUTPUT0": r.inputs[0].data} for r in requests]
            if self.fail:
                results = [InternalError("echo instance asked to fail")] * len(requests)
            return Execution.whole_call(results, start)
        finally:
            with self._lock:
                self.running -= 1

    def close(self) -> None:
        pass

    def abort(self) -> bool:
        return False


def spec_from_pbtxt(text: str, name: str = "echo", backend: str = "onnxruntime") -> ModelSpec:
    """A ModelSpec from config text, with Triton's defaults applied (no model file needed)."""
    config = parse_pbtxt(text, f"{name}/config.pbtxt")
    config.name = config.name or name
    config.backend = config.backend or backend
    apply_defaults(config, gpu_count=0)
    return build_spec(config)


def echo_request(rows: int = 1, width: int = 4, request_id: str = "", **parameters: object) -> InferRequest:
    """A validated-looking request for an echo model with input INPUT0 FP32 [rows, width]."""
    data = np.zeros((rows, width), dtype=np.float32)
    request = InferRequest(model_name="echo", id=request_id, parameters=dict(parameters))
    request.inputs = [InferInput("INPUT0", "FP32", data.shape, data)]
    request.batch_size = rows
    return request
