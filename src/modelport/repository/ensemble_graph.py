"""The ensemble dependency graph: which models an ensemble's steps call, cycles, and dependents.

Loading an ensemble loads the models its steps call first (as Triton does); a circle of
ensembles is refused before anything is loaded, since loading it would wait on itself.
"""

from __future__ import annotations

from collections.abc import Callable

from modelport.config.ensemble import cycle_message, find_ensemble_cycle
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import ModelSpec
from modelport.errors import InvalidInput, ModelportError
from modelport.repository.records import ModelTable
from modelport.repository.source import ModelFolder

FolderFinder = Callable[[str], "ModelFolder | None"]


def steps_on_disk(folder: ModelFolder | None) -> tuple[str, ...]:
    """The models the steps of the model in `folder` call, if its config on disk is an ensemble's."""
    if folder is None or not folder.config_path.is_file():
        return ()
    try:
        config = parse_pbtxt(folder.config_path.read_text(encoding="utf-8"), str(folder.config_path))
    except (ModelportError, OSError, UnicodeDecodeError):
        return ()
    if config.platform != "ensemble":
        return ()
    return tuple(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))


def refuse_cycle(spec: ModelSpec, find_folder: FolderFinder) -> None:
    """INVALID_ARG if the ensemble `spec` reaches itself through the ensembles its steps call."""
    assert spec.ensemble is not None
    steps = spec.ensemble.model_names

    def steps_of(name: str) -> tuple[str, ...]:
        return steps if name == spec.name else steps_on_disk(find_folder(name))

    cycle = find_ensemble_cycle(spec.name, steps_of)
    if cycle is not None:
        raise InvalidInput(cycle_message(cycle))


def dependents(models: ModelTable, name: str) -> list[str]:
    """The models with a serving ensemble version whose steps call `name`."""
    found: list[str] = []
    for record in models:
        for served in record.serving().values():
            if any(step.model_name == name for step in served.spec.proto.ensemble_scheduling.step):
                found.append(record.name)
                break
    return found
