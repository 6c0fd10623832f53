"""Model configurations for tuning: the model's own config, a copy with a trial's knobs, tuned.pbtxt.

The model's config.pbtxt is only read. The tuned configuration goes to `<model>/configs/tuned.pbtxt`
(what `serve --model-config-name tuned` reads), and only when that path stays inside the model folder.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format, text_format

from modelport.config.model_config import parse_pbtxt
from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto
from modelport.tune.search import Knobs

TUNED_NAME = "tuned"
THREADS_PARAMETER = "intra_op_thread_count"  # ONNX Runtime's intra-op thread pool size


def model_folder(repository: Path, model: str) -> Path:
    """The model's folder in `repository`; refuses names that leave it or folders that do not exist."""
    if not model or model in (".", "..") or "/" in model or "\\" in model or "\0" in model:
        raise InvalidInput(f"invalid model name '{model}'")
    folder = repository / model
    if not folder.is_dir():
        raise InvalidInput(f"model '{model}' has no folder in the model repository {repository}")
    return folder


def read_base(folder: Path) -> ModelConfigProto:
    """The model's own config.pbtxt (an empty config naming the model when it has none)."""
    path = folder / "config.pbtxt"
    config = (
        parse_pbtxt(path.read_text(encoding="utf-8"), f"{folder.name}/config.pbtxt")
        if path.is_file()
        else ModelConfigProto()
    )
    if not config.name:
        config.name = folder.name
    return config


def ensemble_batch_floor(repository: Path, model: str) -> int:
    """The largest max_batch_size of the repository's ensembles that have `model` as a step.

    The model must keep at least that: an ensemble refuses a step that takes smaller batches than it.
    Configs that do not parse are skipped (the server reports them when it loads them).
    """
    floor = 0
    for path in sorted(repository.glob("*/config.pbtxt")):
        try:
            config = parse_pbtxt(path.read_text(encoding="utf-8"), path.name)
        except (InvalidInput, OSError, UnicodeDecodeError):
            continue
        steps = config.ensemble_scheduling.step
        if config.platform == "ensemble" and any(step.model_name == model for step in steps):
            floor = max(floor, config.max_batch_size)
    return floor


def with_knobs(base: ModelConfigProto, knobs: Knobs, thread_knob: bool) -> ModelConfigProto:
    """A copy of `base` with the instance count, threads and batching of `knobs`.

    The first instance group takes the count (one CPU group when there is none); the others are
    dropped, so the count is the model's whole layout.
    """
    config = ModelConfigProto()
    config.CopyFrom(base)
    groups = list(config.instance_group)
    del config.instance_group[:]
    group = config.instance_group.add()
    if groups:
        group.CopyFrom(groups[0])
    else:
        group.kind = group.KIND_CPU
    group.count = knobs.instances
    if thread_knob and knobs.threads:
        config.parameters[THREADS_PARAMETER].string_value = str(knobs.threads)
    elif THREADS_PARAMETER in config.parameters and thread_knob:
        del config.parameters[THREADS_PARAMETER]
    if knobs.max_batch_size:
        config.max_batch_size = knobs.max_batch_size
        batching = config.dynamic_batching
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(knobs.preferred)
        batching.max_queue_delay_microseconds = knobs.queue_delay_us
    return config


def as_json(config: ModelConfigProto) -> str:
    """The config as the repository load API takes it."""
    text: str = json_format.MessageToJson(config)
    return text


def tuned_path(folder: Path) -> Path:
    """`<model>/configs/tuned.pbtxt`, checked to resolve inside the model folder (no link leads out)."""
    path = folder / "configs" / f"{TUNED_NAME}.pbtxt"
    root = folder.resolve()
    target = path.resolve()
    if not target.is_relative_to(root) or target == (root / "config.pbtxt"):
        raise InvalidInput(f"refusing to write {path}: it resolves outside the model folder {folder}")
    return path


def write_tuned(folder: Path, config: ModelConfigProto, header: str) -> Path:
    """Save `config` as the model's tuned configuration, after `header` (comment lines); its path."""
    path = tuned_path(folder)
    path.parent.mkdir(exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + text_format.MessageToString(config), encoding="utf-8")
    return path
