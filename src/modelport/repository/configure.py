"""Builds a model's completed, validated configuration from its folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from modelport.backends.placement import gpu_problems
from modelport.backends.registry import BackendRegistry
from modelport.config import completion, coverage, model_config, validation
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec, build_spec
from modelport.errors import InvalidInput, ModelportError
from modelport.protocol import ModelConfigProto
from modelport.repository.source import ModelFolder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfiguredModel:
    """A model's spec plus what was read beside it (labels files)."""

    spec: ModelSpec
    labels: dict[str, list[str]]


def configure_model(
    folder: ModelFolder,
    settings: ServerSettings,
    backends: BackendRegistry,
    *,
    override: ModelConfigProto | None = None,
) -> ConfiguredModel:
    """Read (or take) the config, complete it, validate it, check it against what modelport implements
    (a warning per field it ignores; INVALID_ARG for one it refuses), and load its labels files.

    KIND_AUTO instance groups take the GPUs the model's backend can use here, else the CPU.
    """
    config_file = folder.config_path  # chosen once: configs/<--model-config-name>.pbtxt or config.pbtxt
    source = _shown(folder, config_file)  # what error answers call the file
    config = _read_config(folder, config_file, settings, override)
    if not config.name:
        config.name = folder.name
    elif config.name != folder.name:
        raise InvalidInput(
            f"unexpected directory name '{folder.name}' for model '{config.name}', "
            f"directory name must equal model name"
        )
    completion.resolve_backend(config, folder.path, list(folder.versions.values()))
    if settings.auto_complete_config and config.platform != "ensemble":
        model_file = _first_model_file(folder, config)
        if model_file is not None:
            backends.get(config.backend).auto_complete(config, model_file, settings)
    gpus = backends.get(config.backend).usable_gpus() if config.platform != "ensemble" else 0
    completion.apply_defaults(config, gpu_count=gpus)
    validation.validate(config, source)
    _check_coverage(config, source)
    spec = build_spec(config, folder.path)
    problems = gpu_problems(spec.name, spec.instance_groups, range(gpus))
    if problems:
        raise InvalidInput("; ".join(problems))
    return ConfiguredModel(spec=spec, labels=_read_labels(folder.path, spec))


def backend_of(
    folder: ModelFolder, settings: ServerSettings, override: ModelConfigProto | None = None
) -> str:
    """The backend that would run the model in `folder` ('' when its config cannot be read)."""
    try:
        config = _read_config(folder, folder.config_path, settings, override)
    except (ModelportError, OSError, UnicodeDecodeError):
        return ""
    completion.resolve_backend(config, folder.path, list(folder.versions.values()))
    return str(config.backend or config.platform)


def _read_config(
    folder: ModelFolder, config_file: Path, settings: ServerSettings, override: ModelConfigProto | None
) -> ModelConfigProto:
    if override is not None:
        config = ModelConfigProto()
        config.CopyFrom(override)
        return config
    if config_file.is_file():
        text = config_file.read_text(encoding="utf-8")
        return model_config.parse_pbtxt(text, _shown(folder, config_file))
    if not settings.auto_complete_config:
        raise InvalidInput(
            f"model '{folder.name}' has no {config_file.name} and auto-complete is disabled "
            f"(--disable-auto-complete-config)"
        )
    return ModelConfigProto()


def _check_coverage(config: ModelConfigProto, source: str) -> None:
    """One warning per config field modelport ignores; a field it refuses fails the load."""
    found = coverage.review(config, config.name)
    if found.refusals:
        raise InvalidInput(f"model '{config.name}' ({source}): " + "; ".join(found.refusals))
    for warning in found.warnings:
        log.warning("%s", warning)


def _first_model_file(folder: ModelFolder, config: ModelConfigProto) -> Path | None:
    for _, version_dir in sorted(folder.versions.items(), key=lambda item: str(item[0])):
        candidate: Path = version_dir / config.default_model_filename
        if candidate.exists():
            return candidate
    return None


def _read_labels(model_dir: Path, spec: ModelSpec) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for output in spec.outputs:
        if not output.label_filename:
            continue
        path = model_dir / output.label_filename
        if not path.is_file():
            shown = f"{model_dir.name}/{output.label_filename}"
            raise InvalidInput(
                f"label file '{shown}' of output '{output.name}' of model '{spec.name}' is missing"
            )
        labels[output.name] = path.read_text(encoding="utf-8").splitlines()
    return labels


def _shown(folder: ModelFolder, path: Path) -> str:
    """`path` relative to the model repository (`<model>/config.pbtxt`): clients never see server paths."""
    try:
        return f"{folder.name}/{path.relative_to(folder.path).as_posix()}"
    except ValueError:
        return path.name
