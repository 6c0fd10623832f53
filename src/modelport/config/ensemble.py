"""Ensemble configs: the checks an ensemble's steps must pass before it can serve.

Two stages, as in Triton. `structure_problems` needs only the ensemble's own config (every step
names a model and maps tensors, each tensor has one producer, every ensemble output is produced,
no step waits on a tensor nothing makes, no cycle). `composing_problems` runs once the composing
models are loaded and checks the maps against their configs (names, datatypes, shapes, batching).
`find_ensemble_cycle` finds ensembles that, through their steps, end up calling themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from modelport.config.spec import EnsembleStepSpec, ModelSpec, TensorSpec
from modelport.protocol import ModelConfigProto

T = TypeVar("T")

LATEST = -1  # a step's model_version meaning "the latest READY version"


def structure_problems(config: ModelConfigProto) -> list[str]:
    """What is wrong with an ensemble config by itself (empty when nothing is)."""
    problems = _forbidden_fields(config)
    steps = config.ensemble_scheduling.step
    if not steps:
        return [*problems, "ensemble_scheduling must have at least one step"]
    inputs = {t.name for t in config.input}
    outputs = {t.name for t in config.output}
    producers: dict[str, tuple[int, str]] = {}  # ensemble tensor -> (step, composing output)
    consumers: dict[str, list[tuple[int, str]]] = {}  # ensemble tensor -> [(step, composing input)]
    for index, step in enumerate(steps):
        label = _label(index, step.model_name)
        if not step.model_name:
            problems.append(f"step {index}: model_name must be specified")
        if step.model_version < LATEST:
            problems.append(
                f"{label}: model_version must be -1 (latest) or a version, got {step.model_version}"
            )
        if not step.input_map:
            problems.append(f"{label}: input_map must map at least one input")
        if not step.output_map:
            problems.append(f"{label}: output_map must map at least one output")
        for model_output, tensor in sorted(step.output_map.items()):
            if tensor in inputs:
                problems.append(
                    f"{label}: output '{model_output}' is mapped to ensemble tensor '{tensor}', "
                    f"which is an ensemble input"
                )
            elif tensor in producers:
                problems.append(
                    f"{label}: ensemble tensor '{tensor}' is already produced by "
                    f"{_label(producers[tensor][0], steps[producers[tensor][0]].model_name)}"
                )
            else:
                producers[tensor] = (index, model_output)
        for model_input, tensor in sorted(step.input_map.items()):
            consumers.setdefault(tensor, []).append((index, model_input))
    problems += _dataflow_problems(config, inputs, outputs, producers, consumers)
    if not problems:
        cycle = _step_cycle(len(steps), producers, consumers)
        if cycle:
            path = " -> ".join(_label(i, steps[i].model_name) for i in cycle)
            problems.append(f"the steps form a cycle: {path}")
    return problems


def _forbidden_fields(config: ModelConfigProto) -> list[str]:
    problems: list[str] = []
    if config.instance_group:
        problems.append("instance_group must not be specified for an ensemble")
    if config.HasField("optimization"):
        problems.append("optimization must not be specified for an ensemble")
    if config.model_warmup:
        problems.append("model_warmup must not be specified for an ensemble")
    return problems


def _dataflow_problems(
    config: ModelConfigProto,
    inputs: set[str],
    outputs: set[str],
    producers: Mapping[str, tuple[int, str]],
    consumers: Mapping[str, list[tuple[int, str]]],
) -> list[str]:
    steps = config.ensemble_scheduling.step
    problems: list[str] = []
    for tensor in sorted(inputs - set(consumers)):
        problems.append(f"ensemble input '{tensor}' is not used by any step")
    for tensor in sorted(outputs - set(producers) - inputs):
        problems.append(f"ensemble output '{tensor}' is not produced by any step")
    for tensor, uses in sorted(consumers.items()):
        if tensor in producers or tensor in inputs:
            continue
        for index, model_input in uses:
            problems.append(
                f"{_label(index, steps[index].model_name)}: input '{model_input}' is mapped to ensemble "
                f"tensor '{tensor}', which is neither an ensemble input nor an output of any step"
            )
    for tensor, (index, model_output) in sorted(producers.items()):
        if tensor not in consumers and tensor not in outputs:
            problems.append(
                f"{_label(index, steps[index].model_name)}: output '{model_output}' is mapped to ensemble "
                f"tensor '{tensor}', which no step and no ensemble output uses"
            )
    return problems


def _step_cycle(
    count: int, producers: Mapping[str, tuple[int, str]], consumers: Mapping[str, list[tuple[int, str]]]
) -> list[int] | None:
    """A list of steps [a, b, ..., a] where each waits on the one before, if there is one."""
    after: dict[int, set[int]] = {i: set() for i in range(count)}  # step -> steps that wait on it
    for tensor, (producer, _) in producers.items():
        for consumer, _ in consumers.get(tensor, ()):
            after[producer].add(consumer)
    return _find_cycle(range(count), lambda step: sorted(after[step]))


def _find_cycle(starts: Iterable[T], following: Callable[[T], Sequence[T]]) -> list[T] | None:
    """Depth-first search for a cycle reachable from `starts`; returns it as [x, ..., x]."""
    done: set[T] = set()
    for start in starts:
        if start in done:
            continue
        path: list[T] = [start]
        stack: list[Iterator[T]] = [iter(following(start))]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                done.add(path.pop())
            elif node in path:
                return [*path[path.index(node) :], node]
            elif node not in done:
                path.append(node)
                stack.append(iter(following(node)))
    return None


def find_ensemble_cycle(start: str, steps_of: Callable[[str], Sequence[str]]) -> list[str] | None:
    """Ensembles calling each other in a circle through `start`: [start, ..., start], else None.

    `steps_of(name)` gives the models the steps of ensemble `name` call (nothing for other models).
    """
    cycle = _find_cycle([start], steps_of)
    return cycle if cycle is not None and cycle[0] == start else None


def cycle_message(cycle: Sequence[str]) -> str:
    return "circular dependency between ensembles: " + " -> ".join(cycle)


# --- against the composing models ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _TensorUse:
    datatype: str
    dims: tuple[int, ...]
    batching: bool
    where: str

    @property
    def full_dims(self) -> tuple[int, ...]:
        return (-1, *self.dims) if self.batching else self.dims


def composing_problems(spec: ModelSpec, composing: Sequence[ModelSpec]) -> list[str]:
    """What is wrong with the maps of `spec`'s steps given each step's model config (step order)."""
    assert spec.ensemble is not None
    problems: list[str] = []
    uses: dict[str, _TensorUse] = {}
    batching = spec.max_batch_size > 0
    for tensor in (*spec.inputs, *spec.outputs):
        dims = tensor.reshape if tensor.reshape is not None else tensor.dims
        uses[tensor.name] = _TensorUse(tensor.datatype.name, dims, batching, f"ensemble '{spec.name}'")
    for step, model in zip(spec.ensemble.steps, composing, strict=True):
        problems += _step_problems(spec, step, model, uses)
    return problems


def _step_problems(
    spec: ModelSpec, step: EnsembleStepSpec, model: ModelSpec, uses: dict[str, _TensorUse]
) -> list[str]:
    problems: list[str] = []
    if model.decoupled:
        problems.append(f"{step.label}: decoupled models cannot be ensemble steps in this server")
    if 0 < model.max_batch_size < spec.max_batch_size:
        problems.append(
            f"{step.label}: the ensemble allows batches of up to {spec.max_batch_size}, but model "
            f"'{model.name}' only up to {model.max_batch_size}"
        )
    mapped = {model_input for model_input, _ in step.input_map}
    for model_input, tensor in step.input_map:
        found = model.input(model_input)
        if found is None:
            problems.append(
                f"{step.label}: ensemble tensor '{tensor}' is mapped to input '{model_input}', which model "
                f"'{model.name}' does not have (its inputs: {[t.name for t in model.inputs]})"
            )
        else:
            problems += _consistency(step, model, found, tensor, uses)
    for t in model.inputs:
        if t.name not in mapped and not t.optional:
            problems.append(f"{step.label}: input '{t.name}' is not mapped to any ensemble tensor")
    for model_output, tensor in step.output_map:
        found = model.output(model_output)
        if found is None:
            problems.append(
                f"{step.label}: ensemble tensor '{tensor}' is mapped from output '{model_output}', which "
                f"model '{model.name}' does not have (its outputs: {[t.name for t in model.outputs]})"
            )
        else:
            problems += _consistency(step, model, found, tensor, uses)
    return problems


def _consistency(
    step: EnsembleStepSpec, model: ModelSpec, tensor: TensorSpec, name: str, uses: dict[str, _TensorUse]
) -> list[str]:
    use = _TensorUse(tensor.datatype.name, tensor.dims, model.max_batch_size > 0, f"{step.label}")
    seen = uses.setdefault(name, use)
    if seen is use:
        return []
    if seen.datatype != use.datatype:
        return [
            f"ensemble tensor '{name}': inconsistent data type: {seen.datatype} in {seen.where} "
            f"but {use.datatype} in {use.where}"
        ]
    if not _dims_agree(seen.dims, use.dims) and not _dims_agree(seen.full_dims, use.full_dims):
        return [
            f"ensemble tensor '{name}': inconsistent shape: {_fmt(seen.full_dims)} in {seen.where} "
            f"but {_fmt(use.full_dims)} in {use.where}"
        ]
    return []


def _dims_agree(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def _fmt(dims: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def inherited_labels(
    spec: ModelSpec, own: Mapping[str, list[str]], composing: Sequence[Mapping[str, list[str]]]
) -> dict[str, list[str]]:
    """Labels for the ensemble's outputs: its own label files, else those of the output that makes them.

    So classification on an ensemble output works like on the model output it comes from.
    """
    assert spec.ensemble is not None
    labels = dict(own)
    for step, step_labels in zip(spec.ensemble.steps, composing, strict=True):
        for model_output, tensor in step.output_map:
            if spec.output(tensor) is not None and tensor not in labels and model_output in step_labels:
                labels[tensor] = step_labels[model_output]
    return labels


def _label(index: int, model_name: str) -> str:
    return f"step {index} (model '{model_name}')"
