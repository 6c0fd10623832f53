"""Checks a completed model config and reports every problem with the model, file and field."""

from __future__ import annotations

from modelport.config import ensemble
from modelport.config.sequence import sequence_problems
from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto, model_config_pb2


def validate(config: ModelConfigProto, source: str) -> None:
    """Raise InvalidInput naming `source` (the config file) and the field at fault."""
    problems = list(_problems(config))
    if problems:
        where = f"model '{config.name}' ({source})"
        raise InvalidInput(f"invalid model configuration for {where}: " + "; ".join(problems))


def _problems(config: ModelConfigProto) -> list[str]:
    problems: list[str] = []
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size must be >= 0, got {config.max_batch_size}")
    problems += _io_problems(config, "input", config.input)
    problems += _io_problems(config, "output", config.output)
    if config.platform == "ensemble":
        return problems + ensemble.structure_problems(config)
    if config.HasField("ensemble_scheduling"):
        problems.append(f"ensemble_scheduling needs platform \"ensemble\", not '{config.platform}'")
    problems += _batching_problems(config)
    problems += sequence_problems(config)
    problems += _instance_group_problems(config)
    return problems


def _io_problems(config: ModelConfigProto, kind: str, tensors: object) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for t in tensors:  # type: ignore[attr-defined]
        field = f"{kind} '{t.name}'"
        if not t.name:
            problems.append(f"{kind} is missing a name")
        elif t.name in seen:
            problems.append(f"{field}: duplicate {kind} name")
        seen.add(t.name)
        if t.data_type == model_config_pb2.TYPE_INVALID:
            problems.append(f"{field}: data_type must be specified")
        if not t.dims and not t.is_shape_tensor and not t.HasField("reshape"):
            problems.append(f"{field}: dims must be specified")
        if any(d == 0 or d < -1 for d in t.dims):
            problems.append(f"{field}: dims must be -1 or >= 1, got {list(t.dims)}")
        if t.HasField("reshape"):
            problems += _reshape_problems(field, list(t.dims), list(t.reshape.shape))
    return problems


def _reshape_problems(field: str, dims: list[int], shape: list[int]) -> list[str]:
    if any(d < -1 for d in shape):
        return [f"{field}: reshape dims must be -1 or non-negative, got {shape}"]
    if -1 in dims or -1 in shape:
        if dims.count(-1) != shape.count(-1):
            return [f"{field}: reshape {shape} must have as many -1 dims as dims {dims}"]
        return []
    if _product(dims) != _product(shape):
        return [f"{field}: reshape {shape} has a different element count from dims {dims}"]
    return []


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result


def _batching_problems(config: ModelConfigProto) -> list[str]:
    if not config.HasField("dynamic_batching"):
        return []
    db = config.dynamic_batching
    problems: list[str] = []
    if config.max_batch_size == 0:
        problems.append("dynamic_batching requires max_batch_size > 0")
    for size in db.preferred_batch_size:
        if size < 1 or (config.max_batch_size > 0 and size > config.max_batch_size):
            problems.append(
                f"dynamic_batching.preferred_batch_size {size} must be between 1 and "
                f"max_batch_size {config.max_batch_size}"
            )
    if db.priority_levels > 0 and not 1 <= db.default_priority_level <= db.priority_levels:
        problems.append(
            f"dynamic_batching.default_priority_level must be in [1, {db.priority_levels}], "
            f"got {db.default_priority_level}"
        )
    for level in db.priority_queue_policy:
        if not 1 <= level <= db.priority_levels:
            problems.append(f"dynamic_batching.priority_queue_policy level {level} is out of range")
    return problems


def _instance_group_problems(config: ModelConfigProto) -> list[str]:
    problems: list[str] = []
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    for group in config.instance_group:
        if group.count < 1:
            problems.append(f"instance_group '{group.name}': count must be >= 1, got {group.count}")
        if group.kind not in (kinds.Value("KIND_CPU"), kinds.Value("KIND_GPU"), kinds.Value("KIND_MODEL")):
            problems.append(f"instance_group '{group.name}': unsupported kind")
        if group.kind == kinds.Value("KIND_CPU") and group.gpus:
            problems.append(f"instance_group '{group.name}': KIND_CPU must not list gpus")
    return problems
