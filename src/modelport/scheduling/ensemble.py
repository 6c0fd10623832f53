"""EnsembleScheduler: runs one request through an ensemble's steps, a DAG of other models.

Each step is an ordinary request to its composing model made through the server core, so it is
validated, queued and (dynamically) batched by that model's own scheduler like any client
request. A step starts as soon as the tensors it maps exist, so independent branches run
concurrently. Tensors travel between steps as the numpy arrays the models produced; nothing is
serialised. A failing step fails the request with an error that names the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from modelport.clock import Clock, Deadline, MonotonicClock
from modelport.config.spec import EnsembleStepSpec, ModelSpec
from modelport.errors import InternalError, ModelportError, ModelUnavailable, with_request_id
from modelport.observability.stats import ExecutionTiming, ModelStats
from modelport.scheduling.base import Outputs
from modelport.tensor.records import InferInput, InferRequest, InferResponse, RequestedOutput

_STEP_ENDPOINT = "ensemble step"


class EnsembleCore(Protocol):
    """What the scheduler needs from the server core: its inference entry point."""

    async def infer(
        self, request: InferRequest, *, endpoint: str = ..., internal: bool = False
    ) -> InferResponse: ...


# An ensemble tensor while a request runs: its protocol datatype and its data.
_Tensor = tuple[str, np.ndarray]


class EnsembleScheduler:
    """Schedules the steps of one ensemble version; holds no instances of its own."""

    def __init__(
        self, spec: ModelSpec, core: EnsembleCore, stats: ModelStats, clock: Clock | None = None
    ) -> None:
        assert spec.ensemble is not None
        self._name = spec.name
        self._steps = spec.ensemble.steps
        self._core = core
        self._stats = stats
        self._clock = clock or MonotonicClock()
        self._outputs = tuple(t.name for t in spec.outputs)
        self._optional_inputs = frozenset(t.name for t in spec.inputs if t.optional)
        # Decided once: the tensors each step waits for, and which step makes each tensor.
        self._needs = tuple(frozenset(tensor for _, tensor in step.input_map) for step in self._steps)
        self._producer = {tensor: step.index for step in self._steps for _, tensor in step.output_map}
        self._all_steps = frozenset(range(len(self._steps)))
        self._stopped = False

    async def submit(self, request: InferRequest) -> Outputs:
        if self._stopped:
            raise ModelUnavailable(with_request_id(request.id, f"model '{self._name}' is unloading"))
        start = self._clock.now_ns()
        try:
            outputs = await self._run(request)
        except asyncio.CancelledError:
            self._stats.record_failure(self._clock.now_ns() - start, "CANCELED")
            raise
        except BaseException:
            self._stats.record_failure(self._clock.now_ns() - start, "OTHER")
            raise
        elapsed = self._clock.now_ns() - start
        # The ensemble itself queues nothing; its compute is the time its steps took.
        timing = ExecutionTiming(infer_ns=elapsed)
        self._stats.record_execution(request.batch_size, timing)
        self._stats.record_success(request.batch_size, elapsed, 0, timing)
        return outputs

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Refuse new requests; the steps of running ones belong to their composing models."""
        self._stopped = True

    # --- one request ---------------------------------------------------------------------
    async def _run(self, request: InferRequest) -> Outputs:
        tensors: dict[str, _Tensor] = {i.name: (i.datatype, i.data) for i in request.inputs}
        wanted = [o.name for o in request.outputs] or list(self._outputs)
        todo = set(self._steps_for(wanted)) if request.outputs else set(self._all_steps)
        # Optional ensemble inputs the client left out will never arrive; steps go without them.
        absent = self._optional_inputs.difference(tensors)
        running: dict[asyncio.Task[InferResponse], EnsembleStepSpec] = {}
        try:
            while True:
                available = tensors.keys() | absent
                ready = [self._steps[i] for i in sorted(todo) if self._needs[i] <= available]
                todo.difference_update(step.index for step in ready)
                if len(ready) == 1 and not running:
                    # A chain: run the step inline, no task needed.
                    step = ready[0]
                    self._store(step, await self._call_step(step, request, tensors), tensors)
                    continue
                for step in ready:
                    running[asyncio.ensure_future(self._call_step(step, request, tensors))] = step
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._store(running.pop(task), task.result(), tensors)
        finally:
            if running:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
        return self._collect(request, wanted, tensors)

    def _steps_for(self, outputs: Iterable[str]) -> set[int]:
        """The steps needed to make `outputs` (a client may ask for only some)."""
        needed: set[int] = set()
        pending = [self._producer[name] for name in outputs if name in self._producer]
        while pending:
            index = pending.pop()
            if index not in needed:
                needed.add(index)
                pending += [self._producer[t] for t in self._needs[index] if t in self._producer]
        return needed

    async def _call_step(
        self, step: EnsembleStepSpec, request: InferRequest, tensors: dict[str, _Tensor]
    ) -> InferResponse:
        inputs = [
            InferInput(model_input, tensors[tensor][0], tuple(tensors[tensor][1].shape), tensors[tensor][1])
            for model_input, tensor in step.input_map
            if tensor in tensors
        ]
        step_request = InferRequest(
            model_name=step.model_name,
            model_version="" if step.model_version < 0 else str(step.model_version),
            id=request.id,
            inputs=inputs,
            outputs=[RequestedOutput(model_output) for model_output, _ in step.output_map],
            parameters=dict(request.parameters),  # priority, timeout and custom ones reach every step
        )
        try:
            return await self._core.infer(step_request, endpoint=_STEP_ENDPOINT, internal=True)
        except ModelportError as exc:
            raise _named(exc, f"in ensemble '{self._name}', {step.label}: {exc.message}") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise InternalError(
                f"in ensemble '{self._name}', {step.label}: {type(exc).__name__}: {exc}"
            ) from exc

    def _store(self, step: EnsembleStepSpec, response: InferResponse, tensors: dict[str, _Tensor]) -> None:
        produced = {o.name: o for o in response.outputs}
        for model_output, tensor in step.output_map:
            output = produced.get(model_output)
            if output is None:
                raise InternalError(
                    f"in ensemble '{self._name}', {step.label}: model '{step.model_name}' did not "
                    f"produce output '{model_output}'"
                )
            tensors[tensor] = (output.datatype, output.data)

    def _collect(self, request: InferRequest, wanted: list[str], tensors: dict[str, _Tensor]) -> Outputs:
        missing = [name for name in wanted if name not in tensors]
        if missing:
            raise InternalError(
                with_request_id(request.id, f"ensemble '{self._name}' did not produce output(s) {missing}")
            )
        return {name: tensors[name][1] for name in wanted}


def _named(error: ModelportError, message: str) -> ModelportError:
    """The same kind of error (same class and status code) with a message that names the step."""
    try:
        return type(error)(message, error.code)
    except TypeError:  # a subclass with its own constructor
        return ModelportError(message, error.code)
