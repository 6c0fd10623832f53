"""What modelport does with each field of Triton's ModelConfig: one explicit table, in proto order.

Keys are field paths (`optimization.cuda.graphs`; a repeated or map field's entries share its path).
A SUPPORTED message field names each of its fields below it; any other level covers the field's
whole subtree, since the block as a whole is ignored or refused. A unit test walks the generated
ModelConfig descriptor, so a field Triton adds fails it until the field is placed here, and the
README's "Config blocks" table is rendered from this one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class Level(enum.Enum):
    SUPPORTED = "supported"  # implemented: silent
    PARTLY = "partly"  # implemented in part: a warning at load says which part is ignored
    IGNORED = "ignored"  # not implemented and harmless to skip: a warning at load
    REFUSED = "refused"  # serving without it would give wrong answers: the model is UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Coverage:
    level: Level
    note: str = ""  # why, or (PARTLY) what is ignored
    named_by: str = ""  # the (dotted) field whose values name the entries in the message
    name_label: str = ""  # what those names are called ("accelerator")


S = Coverage(Level.SUPPORTED)


def _s(note: str) -> Coverage:
    return Coverage(Level.SUPPORTED, note)


def _ignored(note: str, named_by: str = "", name_label: str = "") -> Coverage:
    return Coverage(Level.IGNORED, note, named_by, name_label)


def _refused(note: str, named_by: str = "", name_label: str = "") -> Coverage:
    return Coverage(Level.REFUSED, note, named_by, name_label)


_GPU_ONLY = "a GPU execution option of TensorRT / ONNX Runtime GPU"
_GPU_ACCELERATORS = _s(
    "ONNX Runtime on GPU instances: `tensorrt` (Triton's keys mapped to TensorRT provider options) and "
    "`cuda`; other backends ignore it, as Triton's do"
)
_CPU_ACCELERATORS = _s(
    "ONNX Runtime: `openvino` where the installed onnxruntime has it, else a warning; other backends "
    "ignore it"
)
_QUEUE_POLICY = ("timeout_action", "default_timeout_microseconds", "allow_timeout_override", "max_queue_size")

_ENTRIES: dict[str, Coverage] = {
    "name": _s("must equal the folder name"),
    "platform": _s("`onnxruntime_onnx`, `pytorch_libtorch`, `ensemble`"),
    "backend": _s("`onnxruntime`, `python`, `pytorch`"),
    "runtime": _ignored("modelport's backends are built in; no backend library or runtime is picked by name"),
    "version_policy": S,
    "version_policy.latest": S,
    "version_policy.latest.num_versions": S,
    "version_policy.all": S,
    "version_policy.specific": S,
    "version_policy.specific.versions": S,
    "max_batch_size": S,
    "input": S,
    "input.name": S,
    "input.data_type": S,
    "input.format": _s("describes the layout and is shown in the config, as in Triton; no conversion"),
    "input.dims": S,
    "input.reshape": S,
    "input.reshape.shape": S,
    "input.is_shape_tensor": S,
    "input.allow_ragged_batch": S,
    "input.optional": S,
    "input.is_non_linear_format_io": _ignored("TensorRT non-linear I/O formats"),
    "output": S,
    "output.name": S,
    "output.data_type": S,
    "output.dims": S,
    "output.reshape": S,
    "output.reshape.shape": S,
    "output.label_filename": _s("labels for the classification extension"),
    "output.is_shape_tensor": S,
    "output.is_non_linear_format_io": _ignored("TensorRT non-linear I/O formats"),
    "batch_input": _refused(
        "the model expects tensors Triton builds for each batch (element counts, item shapes); without them "
        "it would run on missing or wrong inputs",
        named_by="target_name", name_label="target",
    ),
    "batch_output": _refused(
        "Triton scatters this output to the requests by the shape of an input; splitting it by batch rows "
        "would give requests wrong answers",
        named_by="target_name", name_label="target",
    ),
    "optimization": S,
    "optimization.graph": S,
    "optimization.graph.level": _s(
        "ONNX Runtime's graph optimization level (other backends ignore it, as in Triton)"
    ),
    "optimization.priority": _ignored("GPU stream priority"),
    "optimization.cuda": S,
    "optimization.cuda.graphs": _ignored(_GPU_ONLY),
    "optimization.cuda.busy_wait_events": _ignored(_GPU_ONLY),
    "optimization.cuda.graph_spec": _ignored(_GPU_ONLY),
    "optimization.cuda.output_copy_stream": _ignored(_GPU_ONLY),
    "optimization.execution_accelerators": S,
    "optimization.execution_accelerators.gpu_execution_accelerator": _GPU_ACCELERATORS,
    "optimization.execution_accelerators.gpu_execution_accelerator.name": S,
    "optimization.execution_accelerators.gpu_execution_accelerator.parameters": S,
    "optimization.execution_accelerators.cpu_execution_accelerator": _CPU_ACCELERATORS,
    "optimization.execution_accelerators.cpu_execution_accelerator.name": S,
    "optimization.execution_accelerators.cpu_execution_accelerator.parameters": S,
    "optimization.input_pinned_memory": S,
    "optimization.input_pinned_memory.enable": _s(
        "no copy is staged through pinned memory, so both values behave alike (completion sets it, as "
        "Triton's does)"
    ),
    "optimization.output_pinned_memory": S,
    "optimization.output_pinned_memory.enable": _s("as `input_pinned_memory`"),
    "optimization.gather_kernel_buffer_threshold": _ignored("a GPU gather kernel option"),
    "optimization.eager_batching": _ignored("a TensorRT backend option"),
    "dynamic_batching": S,
    "dynamic_batching.preferred_batch_size": S,
    "dynamic_batching.max_queue_delay_microseconds": S,
    "dynamic_batching.preserve_ordering": S,
    "dynamic_batching.priority_levels": S,
    "dynamic_batching.default_priority_level": S,
    "dynamic_batching.default_queue_policy": S,
    **{f"dynamic_batching.default_queue_policy.{name}": S for name in _QUEUE_POLICY},
    "dynamic_batching.priority_queue_policy": S,
    **{f"dynamic_batching.priority_queue_policy.{name}": S for name in _QUEUE_POLICY},
    "sequence_batching": S,
    "sequence_batching.direct": S,
    "sequence_batching.direct.max_queue_delay_microseconds": S,
    "sequence_batching.direct.minimum_slot_utilization": _s(
        "with max_queue_delay_microseconds: a batch waits until this share of the slots is ready"
    ),
    "sequence_batching.oldest": S,
    "sequence_batching.oldest.max_candidate_sequences": S,
    "sequence_batching.oldest.preferred_batch_size": S,
    "sequence_batching.oldest.max_queue_delay_microseconds": S,
    "sequence_batching.oldest.preserve_ordering": S,
    "sequence_batching.max_sequence_idle_microseconds": S,
    "sequence_batching.control_input": S,
    "sequence_batching.control_input.name": S,
    "sequence_batching.control_input.control": S,
    "sequence_batching.control_input.control.kind": S,
    "sequence_batching.control_input.control.int32_false_true": S,
    "sequence_batching.control_input.control.fp32_false_true": S,
    "sequence_batching.control_input.control.bool_false_true": S,
    "sequence_batching.control_input.control.data_type": S,
    "sequence_batching.state": S,
    "sequence_batching.state.input_name": S,
    "sequence_batching.state.output_name": S,
    "sequence_batching.state.data_type": S,
    "sequence_batching.state.dims": S,
    "sequence_batching.state.initial_state": S,
    "sequence_batching.state.initial_state.data_type": S,
    "sequence_batching.state.initial_state.dims": S,
    "sequence_batching.state.initial_state.zero_data": S,
    "sequence_batching.state.initial_state.data_file": S,
    "sequence_batching.state.initial_state.name": S,
    "sequence_batching.state.use_same_buffer_for_input_output": _s(
        "a GPU memory option; states are kept in host memory either way"
    ),
    "sequence_batching.state.use_growable_memory": _refused(
        "growable GPU memory needs KIND_GPU instances (as in Triton); modelport keeps states in host memory"
    ),
    "sequence_batching.iterative_sequence": _refused(
        "the model reschedules its requests for each step of a sequence; modelport does not reschedule, so "
        "such a model would stop after its first step"
    ),
    "ensemble_scheduling": S,
    "ensemble_scheduling.step": S,
    "ensemble_scheduling.step.model_name": S,
    "ensemble_scheduling.step.model_version": S,
    "ensemble_scheduling.step.input_map": S,
    "ensemble_scheduling.step.output_map": S,
    "ensemble_scheduling.step.model_namespace": _ignored(
        "model namespacing is not implemented: a step calls the model of that name"
    ),
    "ensemble_scheduling.max_inflight_requests": _ignored(
        "no cap on an ensemble's requests in flight; each step queues in its model's own bounded queue"
    ),
    "instance_group": S,
    "instance_group.name": S,
    "instance_group.kind": _s("KIND_CPU, KIND_GPU, KIND_MODEL, KIND_AUTO"),
    "instance_group.count": S,
    "instance_group.rate_limiter": S,
    "instance_group.rate_limiter.resources": S,
    "instance_group.rate_limiter.resources.name": S,
    "instance_group.rate_limiter.resources.global": S,
    "instance_group.rate_limiter.resources.count": S,
    "instance_group.rate_limiter.priority": S,
    "instance_group.gpus": S,
    "instance_group.secondary_devices": _ignored("TensorRT DLA devices"),
    "instance_group.profile": _ignored("TensorRT optimization profiles"),
    "instance_group.passive": _ignored("passive instances are given requests like the others"),
    "instance_group.host_policy": _ignored("NUMA host policies (`--host-policy`)"),
    "default_model_filename": S,
    "cc_model_filenames": _ignored(
        "a model file per GPU compute capability; `default_model_filename` is loaded"
    ),
    "metric_tags": _ignored("extra metric labels"),
    "parameters": _s("given to the backend (ONNX Runtime and PyTorch read their thread and session keys; a "
                     "Python model sees them all) and to traffic routing"),
    "parameters.string_value": S,
    "model_warmup": S,
    "model_warmup.name": S,
    "model_warmup.batch_size": S,
    "model_warmup.inputs": S,
    "model_warmup.inputs.data_type": S,
    "model_warmup.inputs.dims": S,
    "model_warmup.inputs.zero_data": S,
    "model_warmup.inputs.random_data": S,
    "model_warmup.inputs.input_data_file": S,
    "model_warmup.count": S,
    "model_operations": _ignored(
        "custom operation libraries are not loaded: a model needing one fails to load"
    ),
    "model_transaction_policy": S,
    "model_transaction_policy.decoupled": S,
    "model_repository_agents": _refused(
        "repository agents check or transform the model files before the load (checksums, decryption, "
        "conversion); serving the files without them would skip that",
        named_by="agents.name", name_label="agent",
    ),
    "response_cache": S,
    "response_cache.enable": S,
    "model_metrics": _ignored("per-model metric options; modelport's histograms have fixed buckets"),
}

TABLE: Mapping[str, Coverage] = MappingProxyType(_ENTRIES)
