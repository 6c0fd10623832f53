"""ONNX Runtime backend: one InferenceSession per instance; config auto-completion from the graph."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelport.backends.base import ExecuteResult, Execution, InstancePlacement
from modelport.backends.batching import gather_inputs, split_outputs
from modelport.backends.devices import visible_gpu_count
from modelport.backends.onnxruntime.providers import Placement, ProviderPlan, accelerators, plan_providers
from modelport.config.sequence import hidden_tensor_names
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.errors import InternalError, InvalidInput, ModelportError, ModelUnavailable
from modelport.observability.redaction import model_repository_of, repository_path, scrub_paths
from modelport.observability.stats import ExecutionTiming
from modelport.protocol import ModelConfigProto, model_config_pb2
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

_ORT_TO_CONFIG = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
    "tensor(bfloat16)": "TYPE_BF16",
}

_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxRuntimeBackend:
    """Serves `model.onnx` files with onnxruntime."""

    name = "onnxruntime"

    def usable_gpus(self) -> int:
        """The visible GPUs, if this onnxruntime build has the CUDA execution provider."""
        return visible_gpu_count() if "CUDAExecutionProvider" in ort.get_available_providers() else 0

    def auto_complete(self, config: ModelConfigProto, model_path: Path, settings: ServerSettings) -> None:
        if config.input and config.output:
            log.info(
                "skipping model configuration auto-complete for '%s': inputs and outputs already specified",
                config.name,
            )
            return
        session = _open_session(model_path, ort.SessionOptions(), ["CPUExecutionProvider"])
        graph_inputs, graph_outputs = session.get_inputs(), session.get_outputs()
        can_batch = all(_first_dim_dynamic(t.shape) for t in [*graph_inputs, *graph_outputs])
        if can_batch and config.max_batch_size == 0:
            config.max_batch_size = settings.default_max_batch_size(self.name)
            log.warning(
                "autofilled max_batch_size to %d for model '%s' since batching is supported but no "
                "max_batch_size is specified in model configuration",
                config.max_batch_size,
                config.name,
            )
        if not can_batch and config.max_batch_size != 0:
            raise InvalidInput(
                f"autofill failed for model '{config.name}': model does not support batching while "
                f"non-zero max_batch_size is specified"
            )
        scheduled = config.HasField("dynamic_batching") or config.HasField("sequence_batching")
        if can_batch and config.max_batch_size > 1 and not scheduled:
            config.dynamic_batching.SetInParent()
        hidden_inputs, hidden_outputs = hidden_tensor_names(config)  # fed and taken by the sequence batcher
        if not config.input:
            for t in graph_inputs:
                if t.name not in hidden_inputs:
                    _fill_tensor(config.input.add(), t, config.max_batch_size)
        if not config.output:
            for t in graph_outputs:
                if t.name not in hidden_outputs:
                    _fill_tensor(config.output.add(), t, config.max_batch_size)

    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> OnnxRuntimeInstance:
        options = session_options(spec, placement)
        plan = provider_plan(spec, placement, model_path.parent.parent)
        for warning in plan.warnings:
            log.warning("%s", warning)
        session = _open_session(model_path, options, list(plan.providers))
        _check_providers(spec, placement, plan, session.get_providers())
        return OnnxRuntimeInstance(spec, session)


def provider_plan(spec: ModelSpec, placement: InstancePlacement, model_dir: Path) -> ProviderPlan:
    """The execution providers of one instance (see providers.plan_providers)."""
    where = Placement(
        spec.name, placement.group.name, placement.device_id, ort.get_available_providers(), model_dir
    )
    chosen = spec.proto.optimization.execution_accelerators
    return plan_providers(
        where,
        spec.parameters,
        accelerators(chosen.gpu_execution_accelerator),
        accelerators(chosen.cpu_execution_accelerator),
    )


def _check_providers(
    spec: ModelSpec, placement: InstancePlacement, plan: ProviderPlan, opened: Sequence[str]
) -> None:
    """onnxruntime falls back to the CPU when a GPU provider fails to start: refuse that instead."""
    missing = [name for name in plan.names if name not in opened]
    if missing:
        raise ModelUnavailable(
            f"instance group '{placement.group.name}' of model '{spec.name}': onnxruntime could not start "
            f"{', '.join(missing)} (its libraries or the device are missing; the server log has the reason); "
            f"the session would run on {', '.join(opened)} instead"
        )


def session_options(spec: ModelSpec, placement: InstancePlacement) -> ort.SessionOptions:
    """Session options from config `parameters` and `optimization`."""
    params = spec.parameters
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", placement.threads) or 0)
    options.inter_op_num_threads = int(params.get("inter_op_thread_count", 1) or 0)
    if params.get("execution_mode") == "1":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if params.get("enable_mem_arena") == "0":
        options.enable_cpu_mem_arena = False
    spinning = params.get("allow_spinning", "0" if placement.threads < (os.cpu_count() or 1) else "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    # Spin only while a batch runs: idle pool threads must not take the cores the event loop needs.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    level = spec.proto.optimization.graph.level
    options.graph_optimization_level = _GRAPH_LEVELS.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return options


class OnnxRuntimeInstance:
    """One InferenceSession; concatenates a batch once and splits outputs back as views."""

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession) -> None:
        self._session = session
        self._model = spec.name
        self._output_names = [o.name for o in session.get_outputs()]
        self._string_inputs = {i.name for i in session.get_inputs() if i.type == "tensor(string)"}
        # On the CPU only, a run's CPU time is its duration: a tiny model may run on the event loop.
        self.may_run_inline = session.get_providers() == ["CPUExecutionProvider"]

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        if self._string_inputs:
            refused = {i: e for i, r in enumerate(requests) if (e := self._not_text(r)) is not None}
            if refused:
                return self._execute_without(requests, refused)
        start = time.perf_counter_ns()
        try:
            feeds = {name: self._prepare(name, data) for name, data in gather_inputs(requests).items()}
            gathered = time.perf_counter_ns()
            outputs = self._session.run(self._output_names, feeds)
        except ModelportError as exc:
            return Execution.whole_call([exc] * len(requests), start)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            failure = InternalError(f"onnx runtime error: {exc}")
            return Execution.whole_call([failure] * len(requests), start)
        ran = time.perf_counter_ns()
        # session.run returns exactly one array per requested output name, in that order
        results = split_outputs(self._model, requests, dict(zip(self._output_names, outputs, strict=True)))
        timing = ExecutionTiming(gathered - start, ran - gathered, time.perf_counter_ns() - ran)
        return Execution(results, timing)

    def close(self) -> None:
        del self._session

    def abort(self) -> bool:
        return False  # the execution runs on the instance's thread: it cannot be stopped from outside

    def _prepare(self, name: str, data: np.ndarray) -> np.ndarray:
        if name in self._string_inputs:
            return np.vectorize(_as_text, otypes=[object])(data) if data.size else data
        return data

    def _not_text(self, request: InferRequest) -> InvalidInput | None:
        """Why a request's data for a string input cannot reach onnxruntime (which takes UTF-8 text)."""
        for tensor in request.inputs:
            if tensor.name in self._string_inputs:
                for value in tensor.data.flat:
                    if isinstance(value, bytes):
                        try:
                            value.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            return InvalidInput(
                                f"input '{tensor.name}' of model '{self._model}' is a string tensor and "
                                f"needs UTF-8 text: byte {exc.start} of an element is not valid UTF-8"
                            )
        return None

    def _execute_without(
        self, requests: Sequence[InferRequest], refused: dict[int, InvalidInput]
    ) -> Execution:
        """The refused requests get their errors; the others run as one batch."""
        kept = [r for i, r in enumerate(requests) if i not in refused]
        ran = self.execute(kept) if kept else Execution([], ExecutionTiming())
        answers = iter(ran.results)
        results: ExecuteResult = [refused[i] if i in refused else next(answers) for i in range(len(requests))]
        return Execution(results, ran.timing)


def _as_text(value: object) -> object:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _open_session(
    model_path: Path, options: ort.SessionOptions, providers: list[Any]
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's own exception types
        log.error("failed to load ONNX model '%s': %s", model_path, exc)
        repository = model_repository_of(model_path)
        shown, detail = repository_path(model_path, repository), scrub_paths(str(exc), repository)
        raise InternalError(f"failed to load ONNX model '{shown}': {detail}") from None


def _first_dim_dynamic(shape: Sequence[Any]) -> bool:
    if not shape:
        return False
    first = shape[0]
    return not isinstance(first, int) or first < 0


def _fill_tensor(target: Any, source: Any, max_batch_size: int) -> None:
    target.name = source.name
    config_type = _ORT_TO_CONFIG.get(source.type)
    if config_type is None:
        raise InvalidInput(f"unsupported ONNX type {source.type} for tensor '{source.name}'")
    target.data_type = model_config_pb2.DataType.Value(config_type)
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in source.shape]
    if max_batch_size > 0:
        dims = dims[1:]
    if not dims:
        target.dims.append(1)
        if max_batch_size > 0:
            target.reshape.SetInParent()
    else:
        target.dims.extend(dims)
