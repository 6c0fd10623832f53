"""Scans model repository folders: `<repo>/<model>/config.pbtxt` and numeric version folders.

With `--model-config-name=<name>` a model reads `<model>/configs/<name>.pbtxt` when that file exists,
else its `config.pbtxt` (else auto-complete), as Triton does; the choice is made at each read, so
adding or removing the custom file takes effect at the next load or poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
CUSTOM_CONFIG_FOLDER = "configs"
_SKIPPED_FOLDERS = {"warmup", "initial_state", CUSTOM_CONFIG_FOLDER}


@dataclass(frozen=True, slots=True)
class ModelFolder:
    """One model's folder: where it is and which version folders it has."""

    name: str
    path: Path
    versions: dict[int, Path]
    config_name: str = ""  # --model-config-name: prefer configs/<config_name>.pbtxt

    @property
    def config_path(self) -> Path:
        """The config file this model reads now: the custom one if it exists, else config.pbtxt."""
        if self.config_name:
            custom = self.path / CUSTOM_CONFIG_FOLDER / f"{self.config_name}.pbtxt"
            if custom.is_file():
                return custom
        return self.path / CONFIG_FILE


def scan_repositories(roots: tuple[Path, ...], config_name: str = "") -> dict[str, ModelFolder]:
    """Every model folder under the roots; a name found in two roots is skipped with a warning."""
    found: dict[str, list[ModelFolder]] = {}
    for root in roots:
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            found.setdefault(entry.name, []).append(read_model_folder(entry, config_name))
    models: dict[str, ModelFolder] = {}
    for name, folders in found.items():
        if len(folders) > 1:
            log.error("model '%s' is not unique across all model repositories; skipped", name)
            continue
        models[name] = folders[0]
    return models


def read_model_folder(path: Path, config_name: str = "") -> ModelFolder:
    """The version folders of one model folder (non-numeric and zero-padded names are ignored)."""
    versions: dict[int, Path] = {}
    for entry in sorted(path.iterdir()):
        if not entry.is_dir() or entry.name.startswith(".") or entry.name in _SKIPPED_FOLDERS:
            continue
        version = parse_version(entry.name)
        if version is None:
            log.warning(
                "ignoring version folder '%s' of model '%s': not a version number", entry.name, path.name
            )
            continue
        versions[version] = entry
    return ModelFolder(name=path.name, path=path, versions=versions, config_name=config_name)


def parse_version(name: str) -> int | None:
    """A version folder name as an integer; None when it is not a canonical non-negative number."""
    if not name.isdigit() or (len(name) > 1 and name.startswith("0")):
        return None
    return int(name)
