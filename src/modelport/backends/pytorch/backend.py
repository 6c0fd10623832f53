"""PyTorch backend: TorchScript `model.pt` files (platform pytorch_libtorch), with batching.

torch is optional (`pip install modelport[torch]`); without it a PyTorch model fails to load with
a message saying so, and the rest of the server is unaffected.

Inputs are matched to `forward` the way Triton's PyTorch backend matches them: by argument name
when every configured input names a `forward` argument; by `<name>__<index>` position when every
input follows that convention; otherwise in config order. A single `Dict[str, Tensor]` argument
receives the inputs keyed by their config names. Outputs: a tensor, or a tuple/list matched by
`<name>__<index>` or config order, or a dict keyed by output name.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelport.backends.base import Execution, InstancePlacement
from modelport.backends.batching import gather_inputs, split_outputs
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.errors import InternalError, InvalidInput, ModelportError, ModelUnavailable
from modelport.observability.redaction import model_repository_of, repository_path, scrub_paths
from modelport.observability.stats import ExecutionTiming
from modelport.protocol import ModelConfigProto
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

_INDEXED = re.compile(r"^(.*)__(\d+)$")
_TRUE = ("true", "1", "yes", "on")


def import_torch() -> ModuleType:
    """torch, or UNAVAILABLE with how to install it."""
    try:
        import torch
    except ImportError:
        raise ModelUnavailable(
            "the PyTorch backend needs torch, which is not installed; install it with "
            "`pip install modelport[torch]`"
        ) from None
    return torch


class PyTorchBackend:
    """Serves TorchScript `model.pt` files with torch."""

    name = "pytorch"

    def auto_complete(self, config: ModelConfigProto, model_path: Path, settings: ServerSettings) -> None:
        # TorchScript files carry no tensor names, datatypes or shapes to complete a config from.
        log.info(
            "skipping model configuration auto-complete for '%s': not supported for pytorch backend",
            config.name,
        )

    def usable_gpus(self) -> int:
        """The CUDA devices torch sees (0 without torch, or with a CPU build)."""
        try:
            torch = import_torch()
        except ModelUnavailable:
            return 0
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> TorchScriptInstance:
        torch = import_torch()
        if any(t.datatype.is_bytes for t in (*spec.inputs, *spec.outputs)):
            raise InvalidInput(
                f"model '{spec.name}': TYPE_STRING tensors are not supported by the PyTorch backend"
            )
        device = _device(torch, spec, placement)
        _apply_thread_settings(torch, spec)
        try:
            module = torch.jit.load(str(model_path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError / its own pybind types
            log.error("failed to load TorchScript model '%s': %s", model_path, exc)
            repository = model_repository_of(model_path)
            shown, detail = repository_path(model_path, repository), scrub_paths(str(exc), repository)
            raise InternalError(f"failed to load TorchScript model '{shown}': {detail}") from None
        module.eval()
        return TorchScriptInstance(spec, module, torch, device)


def _device(torch: ModuleType, spec: ModelSpec, placement: InstancePlacement) -> Any:
    if placement.device_id is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InternalError(
            f"instance group '{placement.group.name}' of model '{spec.name}' asks for KIND_GPU, but torch "
            "has no "
            f"CUDA device here (install a CUDA build of torch on a GPU machine, or use KIND_CPU)"
        )
    return torch.device(f"cuda:{placement.device_id}")


def _apply_thread_settings(torch: ModuleType, spec: ModelSpec) -> None:
    """Triton's INTRA_OP_THREAD_COUNT / INTER_OP_THREAD_COUNT (process-wide in torch)."""
    intra = spec.parameters.get("INTRA_OP_THREAD_COUNT", "")
    if intra.strip().isdigit() and int(intra) > 0:
        torch.set_num_threads(int(intra))
    inter = spec.parameters.get("INTER_OP_THREAD_COUNT", "")
    if inter.strip().isdigit() and int(inter) > 0:
        with contextlib.suppress(RuntimeError):  # settable once per process, before any inter-op work
            torch.set_num_interop_threads(int(inter))


# Pinning costs a host copy: it pays off for large batches only.
_PIN_FROM_BYTES = 1 << 20


class TorchScriptInstance:
    """One loaded TorchScript module; concatenates a batch once and splits outputs back as views."""

    def __init__(self, spec: ModelSpec, module: Any, torch: ModuleType, device: Any) -> None:
        self._torch = torch
        self._module = module
        self._device = device
        self._name = spec.name
        self._input_names = list(spec.model_input_names)
        self._output_names = list(spec.model_output_names)
        self._call = _input_binding(module, self._input_names)
        self._output_index = _output_positions(self._output_names)
        self._optimized = (
            spec.parameters.get("DISABLE_OPTIMIZED_EXECUTION", "false").strip().lower() not in _TRUE
        )

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        start = time.perf_counter_ns()
        try:
            feeds = {name: self._tensor(array) for name, array in gather_inputs(requests).items()}
            gathered = time.perf_counter_ns()
            with self._torch.inference_mode(), self._torch.jit.optimized_execution(self._optimized):
                produced = self._call(self._module, feeds)
            ran = time.perf_counter_ns()
            outputs = self._outputs(produced)
        except ModelportError as exc:
            return Execution.whole_call([exc] * len(requests), start)
        except Exception as exc:  # torch raises RuntimeError and its own exception types
            return Execution.whole_call([self._failure(exc, requests)] * len(requests), start)
        results = split_outputs(self._name, requests, outputs)
        timing = ExecutionTiming(gathered - start, ran - gathered, time.perf_counter_ns() - ran)
        return Execution(results, timing)

    def _failure(self, exc: Exception, requests: Sequence[InferRequest]) -> InternalError:
        """The batch's error; out of device memory frees the cache so that the next batch may fit."""
        if self._device.type == "cuda" and isinstance(exc, self._torch.cuda.OutOfMemoryError):
            self._torch.cuda.empty_cache()
            rows = sum(r.batch_size for r in requests)
            return InternalError(
                f"PyTorch execute failure: out of memory on {self._device} running a batch of {rows} rows "
                f"of model '{self._name}'; the batch failed, the model keeps serving (smaller batches or "
                f"fewer instances per GPU need less)"
            )
        if self._device.type == "cuda" and "CUDA error" in str(exc):
            return InternalError(f"PyTorch execute failure on {self._device}: {str(exc).splitlines()[0]}")
        return InternalError(f"PyTorch execute failure: {exc}")

    def close(self) -> None:
        del self._module

    def abort(self) -> bool:
        return False  # the execution runs on the instance's thread: it cannot be stopped from outside

    def _tensor(self, array: np.ndarray) -> Any:
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array)  # torch.from_numpy shares memory and wants a writable, contiguous array
        tensor = self._torch.from_numpy(array)
        if self._device.type == "cpu":
            return tensor
        if array.nbytes >= _PIN_FROM_BYTES:  # a pinned copy makes the transfer a direct DMA
            tensor = tensor.pin_memory()
        return tensor.to(self._device, non_blocking=True)

    def _outputs(self, produced: Any) -> dict[str, np.ndarray]:
        torch = self._torch
        if isinstance(produced, dict):
            found = {name: produced[name] for name in self._output_names if name in produced}
        elif isinstance(produced, torch.Tensor):
            if len(self._output_names) != 1:
                raise InternalError(
                    f"model '{self._name}' returned one tensor but its configuration has "
                    f"{len(self._output_names)} outputs"
                )
            found = {self._output_names[0]: produced}
        elif isinstance(produced, (tuple, list)):
            found = {}
            for name, index in zip(self._output_names, self._output_index, strict=True):
                if index >= len(produced):
                    raise InternalError(
                        f"model '{self._name}' returned {len(produced)} outputs; output '{name}' expects "
                        f"index {index}"
                    )
                found[name] = produced[index]
        else:
            raise InternalError(f"model '{self._name}' returned {type(produced).__name__}; expected tensors")
        missing = [n for n in self._output_names if n not in found]
        if missing:
            raise InternalError(f"model '{self._name}' did not produce output(s) {missing}")
        return {name: _to_numpy(value, name) for name, value in found.items()}


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if not hasattr(value, "detach"):
        raise InternalError(f"output '{name}' is {type(value).__name__}, not a tensor")
    return np.asarray(value.detach().cpu().numpy())


def _forward_arguments(module: Any) -> list[tuple[str, str]]:
    """(name, type) of forward's arguments after `self`, from the TorchScript schema."""
    try:
        schema = module.forward.schema
    except AttributeError:
        return []
    return [(arg.name, str(arg.type)) for arg in schema.arguments[1:]]


def _input_binding(module: Any, names: list[str]) -> Any:
    """How this model's inputs are passed to forward, decided once at load."""
    arguments = _forward_arguments(module)
    arg_names = [name for name, _ in arguments]
    if len(arguments) == 1 and arguments[0][1].replace(" ", "") in ("Dict[str,Tensor]", "Dict(str,Tensor)"):
        return lambda m, feeds: m(feeds)
    if names and all(name in arg_names for name in names):
        return lambda m, feeds: m(**feeds)
    positions = _indexed_positions(names)
    order = list(names) if positions is None else [n for _, n in sorted(zip(positions, names, strict=True))]
    return lambda m, feeds: m(*(feeds[name] for name in order))


def _indexed_positions(names: list[str]) -> list[int] | None:
    matches = [_INDEXED.match(name) for name in names]
    if not names or not all(matches):
        return None
    return [int(m.group(2)) for m in matches if m is not None]


def _output_positions(names: list[str]) -> list[int]:
    positions = _indexed_positions(names)
    return positions if positions is not None else list(range(len(names)))
