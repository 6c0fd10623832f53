"""ModelSpec: the completed, validated model configuration as plain frozen records.

Built once when a model loads; the request path reads these instead of the protobuf message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelport.config.rate_limiter import RateLimiterSpec, rate_limiter_spec
from modelport.config.response_cache import ResponseCacheSpec, response_cache_spec
from modelport.config.sequence import SequenceBatchingSpec, sequence_batching
from modelport.protocol import ModelConfigProto, model_config_pb2
from modelport.tensor import datatype
from modelport.tensor.datatype import DataType


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: DataType
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    optional: bool = False
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False
    label_filename: str = ""


@dataclass(frozen=True, slots=True)
class QueuePolicySpec:
    timeout_action: str = "REJECT"  # or "DELAY"
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0  # 0 = unbounded (bounded by the server-wide cap)


@dataclass(frozen=True, slots=True)
class DynamicBatchingSpec:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicySpec = QueuePolicySpec()
    priority_queue_policy: dict[int, QueuePolicySpec] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceGroupSpec:
    name: str
    kind: str  # "KIND_CPU" | "KIND_GPU" | "KIND_MODEL"
    count: int
    gpus: tuple[int, ...] = ()
    rate_limiter: RateLimiterSpec | None = None  # the group's `rate_limiter` block, if any


@dataclass(frozen=True, slots=True)
class VersionPolicySpec:
    kind: str  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EnsembleStepSpec:
    """One step of an ensemble: which model it calls and how its tensors map to the ensemble's."""

    index: int
    model_name: str
    model_version: int  # -1: the model's latest READY version
    input_map: tuple[tuple[str, str], ...]  # (composing model input, ensemble tensor)
    output_map: tuple[tuple[str, str], ...]  # (composing model output, ensemble tensor)

    @property
    def label(self) -> str:
        """How errors name this step."""
        return f"step {self.index} (model '{self.model_name}')"


@dataclass(frozen=True, slots=True)
class EnsembleSpec:
    """The steps of an ensemble (`platform: "ensemble"`), in config order."""

    steps: tuple[EnsembleStepSpec, ...]

    @property
    def model_names(self) -> tuple[str, ...]:
        """The composing models, each once, in step order."""
        return tuple(dict.fromkeys(step.model_name for step in self.steps))


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything the server needs to know about one model, decided at load time."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_groups: tuple[InstanceGroupSpec, ...]
    version_policy: VersionPolicySpec
    default_model_filename: str
    parameters: dict[str, str]
    dynamic_batching: DynamicBatchingSpec | None
    decoupled: bool
    proto: ModelConfigProto
    ensemble: EnsembleSpec | None = None  # set for `platform: "ensemble"`
    sequence_batching: SequenceBatchingSpec | None = None  # set for stateful models
    response_cache: ResponseCacheSpec | None = None  # set when `response_cache { enable: true }`
    # Name lookups, built once: every request looks its tensors up by name.
    _inputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _outputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs_by_name", {t.name: t for t in reversed(self.inputs)})
        object.__setattr__(self, "_outputs_by_name", {t.name: t for t in reversed(self.outputs)})

    @property
    def metadata_platform(self) -> str:
        """What model metadata reports as `platform`: the platform, else the backend."""
        return self.platform or self.backend

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._outputs_by_name.get(name)

    @property
    def instance_count(self) -> int:
        return sum(group.count for group in self.instance_groups)

    @property
    def model_input_names(self) -> tuple[str, ...]:
        """Every input the model itself takes: the config's, then sequence controls and states."""
        names = tuple(t.name for t in self.inputs)
        return names + self.sequence_batching.extra_input_names if self.sequence_batching else names

    @property
    def model_output_names(self) -> tuple[str, ...]:
        """Every output the model itself produces: the config's, then sequence state outputs."""
        names = tuple(t.name for t in self.outputs)
        return names + self.sequence_batching.state_output_names if self.sequence_batching else names


def _tensor(t: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> TensorSpec:
    config_name = model_config_pb2.DataType.Name(t.data_type)
    return TensorSpec(
        name=t.name,
        datatype=datatype.BY_CONFIG_NAME[config_name],
        dims=tuple(t.dims),
        reshape=tuple(t.reshape.shape) if t.HasField("reshape") else None,
        optional=getattr(t, "optional", False),
        is_shape_tensor=t.is_shape_tensor,
        allow_ragged_batch=getattr(t, "allow_ragged_batch", False),
        label_filename=getattr(t, "label_filename", ""),
    )


def _queue_policy(policy: model_config_pb2.ModelQueuePolicy) -> QueuePolicySpec:
    return QueuePolicySpec(
        timeout_action=model_config_pb2.ModelQueuePolicy.TimeoutAction.Name(policy.timeout_action),
        default_timeout_us=policy.default_timeout_microseconds,
        allow_timeout_override=policy.allow_timeout_override,
        max_queue_size=policy.max_queue_size,
    )


def _dynamic_batching(config: ModelConfigProto) -> DynamicBatchingSpec | None:
    if not config.HasField("dynamic_batching"):
        return None
    db = config.dynamic_batching
    return DynamicBatchingSpec(
        preferred_batch_sizes=tuple(sorted(db.preferred_batch_size)),
        max_queue_delay_us=db.max_queue_delay_microseconds,
        preserve_ordering=db.preserve_ordering,
        priority_levels=db.priority_levels,
        default_priority_level=db.default_priority_level,
        default_queue_policy=_queue_policy(db.default_queue_policy),
        priority_queue_policy={int(k): _queue_policy(v) for k, v in db.priority_queue_policy.items()},
    )


def _ensemble(config: ModelConfigProto) -> EnsembleSpec | None:
    if config.platform != "ensemble":
        return None
    return EnsembleSpec(
        tuple(
            EnsembleStepSpec(
                index=index,
                model_name=step.model_name,
                model_version=step.model_version,
                input_map=tuple(sorted(step.input_map.items())),
                output_map=tuple(sorted(step.output_map.items())),
            )
            for index, step in enumerate(config.ensemble_scheduling.step)
        )
    )


def _version_policy(config: ModelConfigProto) -> VersionPolicySpec:
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicySpec("all")
    if which == "specific":
        return VersionPolicySpec("specific", versions=tuple(policy.specific.versions))
    num = policy.latest.num_versions if which == "latest" else 1
    return VersionPolicySpec("latest", num_versions=num)


def build_spec(config: ModelConfigProto, model_dir: Path | None = None) -> ModelSpec:
    """Derive the plain records from a completed and validated config (`model_dir`: where files the
    config names, such as initial-state data, are read from)."""
    groups = tuple(
        InstanceGroupSpec(
            name=g.name,
            kind=model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind),
            count=g.count,
            gpus=tuple(g.gpus),
            rate_limiter=rate_limiter_spec(g),
        )
        for g in config.instance_group
    )
    return ModelSpec(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        inputs=tuple(_tensor(t) for t in config.input),
        outputs=tuple(_tensor(t) for t in config.output),
        instance_groups=groups,
        version_policy=_version_policy(config),
        default_model_filename=config.default_model_filename,
        parameters={k: v.string_value for k, v in config.parameters.items()},
        dynamic_batching=_dynamic_batching(config),
        decoupled=config.model_transaction_policy.decoupled,
        proto=config,
        ensemble=_ensemble(config),
        sequence_batching=sequence_batching(config, model_dir),
        response_cache=response_cache_spec(config),
    )
