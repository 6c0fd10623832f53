"""Which ONNX Runtime execution providers an instance gets, and their options, from the model config.

A pure function of the config, the instance's device and the providers this onnxruntime build has:
GPU instances get CUDA (options from `parameters` and a `cuda` accelerator) and, when asked for,
TensorRT (the `tensorrt` accelerator's keys mapped to ORT's `trt_*` options, as Triton's
onnxruntime backend reads them); CPU instances get OpenVINO when asked for and present.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput, ModelUnavailable

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"

# The `tensorrt` accelerator's keys, by how their values are checked, and the ORT option each sets
# (None: the option has the key's name).
_TRT_INT = dict.fromkeys(
    [
        "trt_max_partition_iterations",
        "trt_min_subgraph_size",
        "trt_dla_core",
        "trt_builder_optimization_level",
        "trt_auxiliary_streams",
        "trt_ep_context_embed_mode",
    ]
)
_TRT_UNSIGNED = {"max_workspace_size_bytes": "trt_max_workspace_size"}
_TRT_BOOL = {"int8_use_native_calibration_table": "trt_int8_use_native_calibration_table"} | dict.fromkeys(
    [
        "trt_dla_enable",
        "trt_engine_cache_enable",
        "trt_dump_subgraphs",
        "trt_force_sequential_engine_build",
        "trt_context_memory_sharing_enable",
        "trt_layer_norm_fp32_fallback",
        "trt_timing_cache_enable",
        "trt_force_timing_cache",
        "trt_detailed_build_log",
        "trt_build_heuristics_enable",
        "trt_sparsity_enable",
        "trt_cuda_graph_enable",
        "trt_dump_ep_context_model",
    ]
)
_TRT_TEXT = {"int8_calibration_table_name": "trt_int8_calibration_table_name"} | dict.fromkeys(
    [
        "trt_engine_cache_prefix",
        "trt_tactic_sources",
        "trt_profile_min_shapes",
        "trt_profile_max_shapes",
        "trt_profile_opt_shapes",
    ]
)
# Options naming files the runtime writes or loads: kept inside the model's directory (see _inside).
_TRT_PATHS = dict.fromkeys(
    [
        "trt_engine_cache_path",
        "trt_timing_cache_path",
        "trt_ep_context_file_path",
        "trt_extra_plugin_lib_paths",
    ]
)
_PRECISIONS = {"FP32": None, "FP16": "trt_fp16_enable", "BF16": "trt_bf16_enable", "INT8": "trt_int8_enable"}
_CUDA_BOOL = ("do_copy_in_default_stream", "use_ep_level_unified_stream")
_CONV_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}
_ARENA_STRATEGY = {"0": "kNextPowerOfTwo", "1": "kSameAsRequested"}

Provider = str | tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One entry of `optimization.execution_accelerators`: its name and parameters."""

    name: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """The providers to open a session with, in priority order, and what to warn about."""

    providers: tuple[Provider, ...]
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p if isinstance(p, str) else p[0] for p in self.providers)


@dataclass(frozen=True, slots=True)
class Placement:
    """What the plan depends on beyond the config: the instance's device and this build's providers."""

    model: str
    group: str
    device_id: int | None  # None: a CPU instance
    available: Collection[str]
    model_dir: Path


def accelerators(proto_accelerators: Any) -> tuple[Accelerator, ...]:
    """Plain records from a repeated `ExecutionAccelerator` protobuf field."""
    return tuple(Accelerator(a.name, dict(a.parameters)) for a in proto_accelerators)


def plan_providers(
    where: Placement,
    parameters: Mapping[str, str],
    gpu_accelerators: tuple[Accelerator, ...] = (),
    cpu_accelerators: tuple[Accelerator, ...] = (),
) -> ProviderPlan:
    """The execution providers for one instance; InvalidInput / ModelUnavailable when they cannot be had."""
    warnings: list[str] = []
    providers: list[Provider] = []
    if where.device_id is not None:
        providers += _gpu_providers(where, parameters, gpu_accelerators)
    elif gpu_accelerators:
        names = ", ".join(f"'{a.name}'" for a in gpu_accelerators)
        warnings.append(
            f"model '{where.model}': gpu_execution_accelerator {names} is not used by instance group "
            f"'{where.group}': it runs on the CPU"
        )
    providers += _cpu_providers(where, cpu_accelerators, warnings)
    return ProviderPlan(tuple(providers), tuple(warnings))


def _gpu_providers(
    where: Placement, parameters: Mapping[str, str], gpu_accelerators: tuple[Accelerator, ...]
) -> list[Provider]:
    assert where.device_id is not None
    cuda_options = _cuda_parameters(parameters)
    found: list[Provider] = []
    for accelerator in gpu_accelerators:
        if accelerator.name == "tensorrt":
            _require(where, TENSORRT, "the 'tensorrt' execution accelerator", "onnxruntime-gpu with TensorRT")
            found.append((TENSORRT, _tensorrt_options(accelerator.parameters, where)))
        elif accelerator.name == "cuda":
            cuda_options |= _cuda_accelerator_options(accelerator.parameters)
        else:
            raise InvalidInput(f"unknown Execution Accelerator '{accelerator.name}' is requested")
    _require(where, CUDA, "KIND_GPU", "onnxruntime-gpu (pip install modelport[gpu])")
    cuda_options["device_id"] = str(where.device_id)
    found.append((CUDA, cuda_options))
    return found


def _cpu_providers(
    where: Placement, cpu_accelerators: tuple[Accelerator, ...], warnings: list[str]
) -> list[Provider]:
    found: list[Provider] = []
    for accelerator in cpu_accelerators:
        if accelerator.name != "openvino":
            raise InvalidInput(f"unknown Execution Accelerator '{accelerator.name}' is requested")
        if OPENVINO in where.available and where.device_id is None:
            found.append((OPENVINO, {"device_type": "CPU"}))
        elif where.device_id is None:
            warnings.append(
                f"model '{where.model}': the 'openvino' execution accelerator is ignored: this "
                f"onnxruntime has no OpenVINO execution provider; instance group '{where.group}' runs on "
                f"ONNX Runtime's CPU provider (same results)"
            )
    found.append(CPU)
    return found


def _require(where: Placement, provider: str, wanted: str, install: str) -> None:
    if provider not in where.available:
        raise ModelUnavailable(
            f"instance group '{where.group}' of model '{where.model}' asks for {wanted}, but the "
            f"installed onnxruntime has no {provider} (it has: {', '.join(sorted(where.available))}); "
            f"install {install} on a GPU machine, or use KIND_CPU"
        )


def _tensorrt_options(parameters: Mapping[str, str], where: Placement) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in parameters.items():
        if key == "precision_mode":
            if value not in _PRECISIONS:
                raise InvalidInput(f"unsupported precision mode '{value}' is requested")
            if (flag := _PRECISIONS[value]) is not None:
                options[flag] = "1"
        elif key in _TRT_INT:
            options[_TRT_INT[key] or key] = str(_integer(key, value, signed=True))
        elif key in _TRT_UNSIGNED:
            options[_TRT_UNSIGNED[key] or key] = str(_integer(key, value, signed=False))
        elif key in _TRT_BOOL:
            options[_TRT_BOOL[key] or key] = "1" if _boolean(key, value) else "0"
        elif key in _TRT_TEXT:
            options[_TRT_TEXT[key] or key] = value
        elif key in _TRT_PATHS:
            options[key] = _inside(key, value, where.model_dir)
        else:
            raise InvalidInput(f"unknown parameter '{key}' is provided for TensorRT Execution Accelerator")
    options = {k: v for k, v in options.items() if v}
    options["device_id"] = str(where.device_id)
    return options


def _cuda_accelerator_options(parameters: Mapping[str, str]) -> dict[str, str]:
    """A `cuda` accelerator's parameters go to the CUDA provider as they are (booleans checked)."""
    options = dict(parameters)
    for key in _CUDA_BOOL:
        if key in options:
            options[key] = "1" if _boolean(key, options[key]) else "0"
    return {k: v for k, v in options.items() if v}


def _cuda_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """The model-level `parameters` Triton reads for the CUDA provider (its older way to set them)."""
    options: dict[str, str] = {}
    if "cudnn_conv_algo_search" in parameters:
        options["cudnn_conv_algo_search"] = _choice(
            "cudnn_conv_algo_search", parameters["cudnn_conv_algo_search"], _CONV_SEARCH
        )
    if "arena_extend_strategy" in parameters:
        options["arena_extend_strategy"] = _choice(
            "arena_extend_strategy", parameters["arena_extend_strategy"], _ARENA_STRATEGY
        )
    if "gpu_mem_limit" in parameters:
        options["gpu_mem_limit"] = str(_integer("gpu_mem_limit", parameters["gpu_mem_limit"], signed=False))
    if "do_copy_in_default_stream" in parameters:
        value = parameters["do_copy_in_default_stream"]
        options["do_copy_in_default_stream"] = "1" if _boolean("do_copy_in_default_stream", value) else "0"
    return options


def _choice(key: str, value: str, choices: Mapping[str, str]) -> str:
    if value.strip() not in choices:
        raise InvalidInput(f"unsupported {key} value '{value}' is requested")
    return choices[value.strip()]


def _integer(key: str, value: str, *, signed: bool) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise InvalidInput(f"failed to convert {key} '{value}' to integral number") from None
    if not signed and number < 0:
        raise InvalidInput(f"failed to convert {key} '{value}' to unsigned integral number")
    return number


def _boolean(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidInput(f"failed to convert {key} '{value}' to boolean value")


def _inside(key: str, value: str, model_dir: Path) -> str:
    """A path option, resolved inside the model's directory: no config text picks where the server writes."""
    if not value:
        return ""
    relative = Path(value)
    resolved = (model_dir / relative).resolve()
    if relative.is_absolute() or not resolved.is_relative_to(model_dir.resolve()):
        raise InvalidInput(
            f"TensorRT parameter '{key}' must be a path relative to the model's directory (got '{value}'); "
            f"modelport keeps the files the runtime writes or loads inside the model repository"
        )
    return str(resolved)
