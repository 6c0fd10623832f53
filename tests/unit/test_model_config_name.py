"""--model-config-name: a model reads configs/<name>.pbtxt when it exists, else config.pbtxt, else
auto-complete (Triton's model_configuration.md, "Custom Model Configuration"), for every model, chosen
again at each read so polling sees the custom file appear, change and go."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.errors import InvalidInput
from modelport.repository.configure import configure_model
from modelport.repository.fingerprint import fingerprint_folder
from modelport.repository.source import read_model_folder, scan_repositories
from support.models import small_models, write_model

REGISTRY = BackendRegistry.with_builtins()
CONFIG = """
name: "{name}" platform: "onnxruntime_onnx" max_batch_size: {batch}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
"""


def _model(repo: Path, name: str, batch: int | None = 8, custom: dict[str, int] | None = None) -> Path:
    """A model whose config.pbtxt says max_batch_size `batch` and configs/<n>.pbtxt say their own."""
    model = small_models.make_add_constant_model(1.0, 4)
    config = CONFIG.format(name=name, batch=batch) if batch is not None else None
    folder = write_model(repo, name, model, config)
    for config_name, custom_batch in (custom or {}).items():
        (folder / "configs").mkdir(exist_ok=True)
        (folder / "configs" / f"{config_name}.pbtxt").write_text(CONFIG.format(name=name, batch=custom_batch))
    return folder


def _batch(folder: Path, config_name: str) -> int:
    settings = ServerSettings(model_config_name=config_name)
    return configure_model(read_model_folder(folder, config_name), settings, REGISTRY).spec.max_batch_size


def test_tritons_three_examples(tmp_path: Path) -> None:
    """model_a has configs/h100.pbtxt, model_b only configs/v100.pbtxt, model_c configs/config.pbtxt."""
    a = _model(tmp_path, "model_a", 8, {"v100": 2, "h100": 3})
    b = _model(tmp_path, "model_b", 8, {"v100": 2})
    c = _model(tmp_path, "model_c", 8, {"config": 5})
    assert [_batch(m, "h100") for m in (a, b, c)] == [3, 8, 8]
    assert [_batch(m, "config") for m in (a, b, c)] == [8, 8, 5]
    assert [_batch(m, "") for m in (a, b, c)] == [8, 8, 8]


def test_the_scan_gives_every_model_the_name(tmp_path: Path) -> None:
    _model(tmp_path, "a", 8, {"h100": 3})
    _model(tmp_path, "b", 8)
    folders = scan_repositories((tmp_path,), "h100")
    assert folders["a"].config_path == tmp_path / "a" / "configs" / "h100.pbtxt"
    assert folders["b"].config_path == tmp_path / "b" / "config.pbtxt"


def test_without_either_file_the_model_is_auto_completed(tmp_path: Path) -> None:
    folder = _model(tmp_path, "m", batch=None)
    assert _batch(folder, "h100") == 4  # completed from the graph: Triton's default max_batch_size
    settings = ServerSettings(model_config_name="h100", auto_complete_config=False)
    with pytest.raises(InvalidInput, match=r"model 'm' has no config\.pbtxt and auto-complete is disabled"):
        configure_model(read_model_folder(folder, "h100"), settings, REGISTRY)


def test_errors_name_the_custom_file_relative_to_the_repository(tmp_path: Path) -> None:
    folder = _model(tmp_path, "m", 8, {"h100": 2})
    (folder / "configs" / "h100.pbtxt").write_text("max_batch_size: oops")
    with pytest.raises(InvalidInput, match=r"^failed to parse model configuration 'm/configs/h100\.pbtxt': "):
        _batch(folder, "h100")


def test_the_chosen_file_is_read_again_at_each_load(tmp_path: Path) -> None:
    folder = _model(tmp_path, "m", 8)
    model = read_model_folder(folder, "h100")
    assert _batch(folder, "h100") == 8
    (folder / "configs").mkdir()
    (folder / "configs" / "h100.pbtxt").write_text(CONFIG.format(name="m", batch=2))
    assert model.config_path.name == "h100.pbtxt" and _batch(folder, "h100") == 2
    (folder / "configs" / "h100.pbtxt").unlink()
    assert model.config_path.name == "config.pbtxt" and _batch(folder, "h100") == 8


def test_polling_sees_the_custom_file_change(tmp_path: Path) -> None:
    folder = _model(tmp_path, "m", 8, {"h100": 2})
    before = fingerprint_folder(read_model_folder(folder, "h100"))
    (folder / "configs" / "h100.pbtxt").write_text(CONFIG.format(name="m", batch=3))
    changed = fingerprint_folder(read_model_folder(folder, "h100"))
    assert changed.shared != before.shared and changed.versions == before.versions
    (folder / "configs" / "h100.pbtxt").unlink()
    assert fingerprint_folder(read_model_folder(folder, "h100")).shared != changed.shared
