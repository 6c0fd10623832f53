"""Completing a model config: which backend serves it, and the defaults Triton always applies.

Backend-specific auto-completion (reading inputs and outputs from the model file) lives in each
backend; this module holds what is common to all models.
"""

from __future__ import annotations

from pathlib import Path

from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto, model_config_pb2

# backend -> (platform, default model file name)
_BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime_onnx", "model.onnx"),
    "pytorch": ("pytorch_libtorch", "model.pt"),
    "python": ("", "model.py"),
    "tensorrt": ("tensorrt_plan", "model.plan"),
    "openvino": ("", "model.xml"),
}
_PLATFORM_TO_BACKEND = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "libtorch": "pytorch",
    "tensorrt_plan": "tensorrt",
}
# Order in which files in the first version folder reveal the backend.
_DETECTION_ORDER = ("tensorrt", "onnxruntime", "openvino", "pytorch", "python")

# Backends whose CPU instance groups default to two instances, as Triton's do.
_TWO_CPU_INSTANCES = {"onnxruntime", "tensorflow"}


def resolve_backend(config: ModelConfigProto, model_dir: Path, version_dirs: list[Path]) -> None:
    """Fill `backend`, `platform` and `default_model_filename` in place."""
    if config.platform == "ensemble":
        return
    if not config.backend and config.platform:
        config.backend = _PLATFORM_TO_BACKEND.get(config.platform, "")
    if not config.backend:
        config.backend = _detect_backend(config, model_dir, version_dirs)
    platform, filename = _BACKENDS.get(config.backend, ("", f"model.{config.backend}"))
    if not config.platform and config.backend != "python":
        config.platform = platform
    if not config.default_model_filename:
        config.default_model_filename = filename


def _detect_backend(config: ModelConfigProto, model_dir: Path, version_dirs: list[Path]) -> str:
    first = sorted(version_dirs, key=lambda p: p.name)[0] if version_dirs else None
    if first is not None:
        for backend in _DETECTION_ORDER:
            if (first / _BACKENDS[backend][1]).exists():
                return backend
    if config.default_model_filename:
        suffix = Path(config.default_model_filename).suffix
        for backend in _DETECTION_ORDER:
            if _BACKENDS[backend][1].endswith(suffix):
                return backend
    raise InvalidInput(
        f"Invalid model name: Could not determine backend for model '{config.name}' "
        f"with no backend in model configuration. Expected model name of the form "
        f"'model.<backend_name>'."
    )


def apply_defaults(config: ModelConfigProto, *, gpu_count: int) -> None:
    """Triton's normalisation, applied whether or not auto-complete is on."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    batching = config.HasField("dynamic_batching") and config.max_batch_size > 0
    if batching and not config.dynamic_batching.preferred_batch_size:
        config.dynamic_batching.preferred_batch_size.append(config.max_batch_size)
    if config.platform != "ensemble":
        config.optimization.input_pinned_memory.enable = True
        config.optimization.output_pinned_memory.enable = True
        _default_instance_groups(config, gpu_count)


def _default_instance_groups(config: ModelConfigProto, gpu_count: int) -> None:
    group_cls = model_config_pb2.ModelInstanceGroup
    if not config.instance_group:
        group = config.instance_group.add()
        group.name = config.name
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == group_cls.KIND_AUTO:
            usable = gpu_count > 0 and all(g < gpu_count for g in group.gpus)
            group.kind = group_cls.KIND_GPU if usable else group_cls.KIND_CPU
        if group.count == 0:
            two = group.kind == group_cls.KIND_CPU and config.backend in _TWO_CPU_INSTANCES
            group.count = 2 if two else 1
        if group.kind == group_cls.KIND_GPU and not group.gpus:
            group.gpus.extend(range(gpu_count))
