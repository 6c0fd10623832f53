"""ONNX Runtime auto-complete: inputs, outputs and batching read from the graph, as Triton's backend does."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto

from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend
from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt, to_json_dict
from modelport.config.settings import ServerSettings
from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto
from support.models import identity_graph, reshape_graph, scale_graph, write_onnx

BACKEND = OnnxRuntimeBackend()
DEFAULT = ServerSettings()


def _model(tmp_path: Path, shape: list[int | str], elem_type: int = TensorProto.FLOAT) -> Path:
    path = tmp_path / "1" / "model.onnx"
    write_onnx(path, identity_graph(elem_type, shape))
    return path


def _complete(path: Path, text: str = 'name: "m"', settings: ServerSettings = DEFAULT) -> ModelConfigProto:
    config = parse_pbtxt(text, "cfg")
    BACKEND.auto_complete(config, path, settings)
    apply_defaults(config, gpu_count=0)
    return config


def test_batchable_model_gets_max_batch_size_4_and_dynamic_batching(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, ["batch", 4]))
    assert config.max_batch_size == 4
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert [(t.name, list(t.dims)) for t in config.input] == [("INPUT0", [4])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("OUTPUT0", [4])]
    assert to_json_dict(config)["input"][0]["data_type"] == "TYPE_FP32"


def test_explicit_max_batch_size_zero_is_still_autofilled(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, ["batch", 4]), 'name: "m" max_batch_size: 0')
    assert config.max_batch_size == 4


def test_explicit_max_batch_size_is_kept(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, ["batch", 4]), 'name: "m" max_batch_size: 16')
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [16]


@pytest.mark.parametrize("scope", ["onnxruntime", ""])
def test_backend_config_changes_the_default_max_batch_size(tmp_path: Path, scope: str) -> None:
    settings = ServerSettings(backend_config={scope: {"default-max-batch-size": "8"}})
    config = _complete(_model(tmp_path, ["batch", 4]), settings=settings)
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [8]


def test_backend_specific_config_wins_over_the_global_one(tmp_path: Path) -> None:
    settings = ServerSettings(
        backend_config={"": {"default-max-batch-size": "2"}, "onnxruntime": {"default-max-batch-size": "6"}}
    )
    assert _complete(_model(tmp_path, ["batch", 4]), settings=settings).max_batch_size == 6


def test_default_max_batch_size_one_adds_no_dynamic_batching(tmp_path: Path) -> None:
    settings = ServerSettings(backend_config={"onnxruntime": {"default-max-batch-size": "1"}})
    config = _complete(_model(tmp_path, ["batch", 4]), settings=settings)
    assert config.max_batch_size == 1
    assert not config.HasField("dynamic_batching")


def test_non_batchable_model_gets_max_batch_size_zero(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, [2, 3]))
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 3]
    assert list(config.output[0].dims) == [2, 3]


def test_max_batch_size_on_a_model_that_cannot_batch_fails(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        _complete(_model(tmp_path, [2, 3]), 'name: "fixed" max_batch_size: 4')
    assert info.value.message == (
        "autofill failed for model 'fixed': model does not support batching while non-zero "
        "max_batch_size is specified"
    )


def test_one_fixed_tensor_prevents_batching(tmp_path: Path) -> None:
    path = tmp_path / "1" / "model.onnx"
    write_onnx(path, scale_graph([1, 4]))
    assert _complete(path).max_batch_size == 0


def test_scalar_dims_become_one_with_an_empty_reshape(tmp_path: Path) -> None:
    path = tmp_path / "1" / "model.onnx"
    write_onnx(path, reshape_graph())  # INPUT0/OUTPUT0 are [batch]
    config = _complete(path)
    assert config.max_batch_size == 4
    in0 = next(t for t in config.input if t.name == "INPUT0")
    assert list(in0.dims) == [1]
    assert in0.HasField("reshape")
    assert list(in0.reshape.shape) == []
    in1 = next(t for t in config.input if t.name == "INPUT1")
    assert list(in1.dims) == [6]
    assert not in1.HasField("reshape")
    assert to_json_dict(config)["output"][0]["reshape"] == {"shape": []}


def test_rank_zero_non_batching_tensor_gets_dims_one_without_reshape(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, []))
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1]
    assert not config.input[0].HasField("reshape")


def test_symbolic_inner_dims_become_minus_one(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, ["batch", "seq", 8]))
    assert list(config.input[0].dims) == [-1, 8]


@pytest.mark.parametrize(
    ("elem_type", "config_type"),
    [
        (TensorProto.STRING, "TYPE_STRING"),
        (TensorProto.BOOL, "TYPE_BOOL"),
        (TensorProto.INT64, "TYPE_INT64"),
        (TensorProto.UINT16, "TYPE_UINT16"),
        (TensorProto.FLOAT16, "TYPE_FP16"),
        (TensorProto.DOUBLE, "TYPE_FP64"),
    ],
)
def test_onnx_types_map_to_config_types(tmp_path: Path, elem_type: int, config_type: str) -> None:
    config = _complete(_model(tmp_path, ["batch", 1], elem_type))
    assert to_json_dict(config)["input"][0]["data_type"] == config_type


def test_complete_io_skips_auto_complete(tmp_path: Path) -> None:
    text = """
name: "m"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
"""
    config = _complete(_model(tmp_path, ["batch", 4]), text)
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")


def test_only_the_missing_side_is_filled(tmp_path: Path) -> None:
    text = 'name: "m" max_batch_size: 2 input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]'
    config = _complete(_model(tmp_path, ["batch", 4]), text)
    assert len(config.input) == 1
    assert [t.name for t in config.output] == ["OUTPUT0"]
    assert config.max_batch_size == 2


def test_existing_scheduler_is_kept(tmp_path: Path) -> None:
    config = _complete(_model(tmp_path, ["batch", 4]), 'name: "m" sequence_batching { }')
    assert config.HasField("sequence_batching")
    assert not config.HasField("dynamic_batching")


def test_garbage_model_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not onnx")
    with pytest.raises(Exception, match="failed to load ONNX model"):
        _complete(path)
