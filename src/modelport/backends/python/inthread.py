"""InThreadPythonInstance: a Python model instance that runs on its instance thread in the server.

The default mode. `execute` gets pb_utils requests whose tensors are views of the request data;
the model's output arrays become the response as they are. No process, no copy, no serialisation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelport.backends.base import ExecuteResult, Execution
from modelport.backends.python.convert import server_request
from modelport.backends.python.runner import ModelRunner, ResponseChannel, Result
from modelport.config.spec import ModelSpec
from modelport.errors import ModelportError
from modelport.observability.stats import ExecutionTiming
from modelport.tensor.records import InferRequest, ResponseSink

log = logging.getLogger(__name__)


class SinkChannel(ResponseChannel):
    """A decoupled request's responses, handed straight to the core's ResponseSink."""

    def __init__(self, sink: ResponseSink | None) -> None:
        super().__init__()
        self._sink = sink

    def _deliver(self, result: Result | None, final: bool) -> None:
        if self._sink is None:
            return
        if isinstance(result, ModelportError):
            self._sink.send(None, result, final)
        else:
            self._sink.send(_arrays(result), None, final)

    def is_cancelled(self) -> bool:
        return self._sink is not None and self._sink.is_cancelled()


def _arrays(result: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    return None if result is None else {name: np.asarray(array) for name, array in result.items()}


class InThreadPythonInstance:
    """One TritonPythonModel object, executed on the instance's own thread."""

    def __init__(
        self, spec: ModelSpec, model_file: Path, module_name: str, args: dict[str, str], runtime: object
    ) -> None:
        self._decoupled = spec.decoupled
        self._version = int(args["model_version"])
        self._outputs = list(spec.model_output_names)
        self._runner = ModelRunner(model_file, module_name, args, decoupled=spec.decoupled, runtime=runtime)
        self._runner.initialize()
        # A tiny model may run on the event loop (see scheduling.instances), unless it streams
        # responses (decoupled) or calls other models (BLS waits for the loop: it cannot run there).
        self.may_run_inline = not spec.decoupled and not _calls_other_models(model_file.parent)

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        start = time.perf_counter_ns()
        if self._decoupled:
            channels = [SinkChannel(r.response_sink) for r in requests]
            pairs = zip(requests, channels, strict=True)
            wrapped = [server_request(r, self._version, self._outputs, c) for r, c in pairs]
        else:
            channels = []
            wrapped = [server_request(r, self._version, self._outputs, None) for r in requests]
        prepared = time.perf_counter_ns()
        results: ExecuteResult = list(self._runner.execute(wrapped, channels))
        return Execution(results, ExecutionTiming(prepared - start, time.perf_counter_ns() - prepared, 0))

    def close(self) -> None:
        try:
            self._runner.finalize()
        except Exception as exc:
            log.error("finalize of python model instance '%s' failed: %s", self._runner.instance_name, exc)

    def abort(self) -> bool:
        return False  # model code on the instance's thread cannot be stopped from outside


def _calls_other_models(folder: Path) -> bool:
    """Whether the model's Python files use BLS (pb_utils.InferenceRequest, its only entry point)."""
    for path in folder.rglob("*.py"):
        try:
            if "InferenceRequest" in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            return True
    return False
