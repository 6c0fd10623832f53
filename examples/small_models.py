"""Tiny ONNX models for tests and demos, built with ``onnx.helper`` only.

Each ``write_*`` function takes the root of a model repository, writes one
model directory in Triton's layout (``<name>/config.pbtxt`` plus
``<name>/<version>/model.onnx``) and returns that model directory.

Only ``onnx`` (and its dependency ``numpy``) is needed; no torch.

Usable as ``import small_models`` (with ``examples/`` on ``sys.path``) or as
``import examples.small_models`` from the repository root.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = 17
# IR version 8 is the one that goes with opset 17; onnxruntime 1.32 reads it.
IR_VERSION = 8
PRODUCER = "modelport-examples"

__all__ = [
    "IR_VERSION",
    "OPSET",
    "SMALL_MODELS",
    "write_add_sub",
    "write_add_versions",
    "write_all",
    "write_simple_noconfig",
    "write_string_identity",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename, so an interrupted
    build never leaves a truncated file behind that a later run would treat
    as already built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; model files must be readable by a non-root server
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_text(path: Path, text: str, skip_existing: bool) -> None:
    if skip_existing and path.exists():
        return
    _atomic_write_bytes(path, text.encode("utf-8"))


def _finish_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _write_model(path: Path, model: onnx.ModelProto, skip_existing: bool) -> None:
    if skip_existing and path.exists():
        return
    _atomic_write_bytes(path, model.SerializeToString())


def _tensor(name: str, elem_type: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


# --------------------------------------------------------------------------
# model graphs
# --------------------------------------------------------------------------

def make_add_sub_model(width: int = 16) -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, FP32 [batch, width]."""
    shape = ["batch", width]
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
        ],
        name="add_sub",
        inputs=[
            _tensor("INPUT0", TensorProto.FLOAT, shape),
            _tensor("INPUT1", TensorProto.FLOAT, shape),
        ],
        outputs=[
            _tensor("OUTPUT0", TensorProto.FLOAT, shape),
            _tensor("OUTPUT1", TensorProto.FLOAT, shape),
        ],
    )
    return _finish_model(graph)


def make_string_identity_model() -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 for a STRING tensor of shape [batch, 1]."""
    shape = ["batch", 1]
    graph = helper.make_graph(
        nodes=[helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"], name="identity")],
        name="string_identity",
        inputs=[_tensor("INPUT0", TensorProto.STRING, shape)],
        outputs=[_tensor("OUTPUT0", TensorProto.STRING, shape)],
    )
    return _finish_model(graph)


def make_scale_model(factor: float = 2.0, width: int = 4) -> onnx.ModelProto:
    """y = x * factor, FP32 [batch, width]."""
    shape = ["batch", width]
    graph = helper.make_graph(
        nodes=[helper.make_node("Mul", ["x", "factor"], ["y"], name="scale")],
        name="simple_noconfig",
        inputs=[_tensor("x", TensorProto.FLOAT, shape)],
        outputs=[_tensor("y", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor("factor", TensorProto.FLOAT, [], [float(factor)])],
    )
    return _finish_model(graph)


def make_add_constant_model(constant: float, width: int = 4) -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 + constant, FP32 [batch, width]."""
    shape = ["batch", width]
    graph = helper.make_graph(
        nodes=[helper.make_node("Add", ["INPUT0", "constant"], ["OUTPUT0"], name="add_constant")],
        name="add_versions",
        inputs=[_tensor("INPUT0", TensorProto.FLOAT, shape)],
        outputs=[_tensor("OUTPUT0", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor("constant", TensorProto.FLOAT, [], [float(constant)])],
    )
    return _finish_model(graph)


# --------------------------------------------------------------------------
# repository writers
# --------------------------------------------------------------------------

ADD_SUB_CONFIG = """\
name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
]
dynamic_batching { }
"""

STRING_IDENTITY_CONFIG = """\
name: "string_identity"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }
]
"""

ADD_VERSIONS_CONFIG = """\
name: "add_versions"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { all: { } }
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
"""


def write_add_sub(repo_dir: Path, *, skip_existing: bool = False) -> Path:
    """``add_sub``: INPUT0/INPUT1 FP32 [batch,16] -> OUTPUT0 (sum), OUTPUT1 (difference)."""
    model_dir = Path(repo_dir) / "add_sub"
    _write_model(model_dir / "1" / "model.onnx", make_add_sub_model(16), skip_existing)
    _write_text(model_dir / "config.pbtxt", ADD_SUB_CONFIG, skip_existing)
    return model_dir


def write_string_identity(repo_dir: Path, *, skip_existing: bool = False) -> Path:
    """``string_identity``: STRING/BYTES INPUT0 [batch,1] -> OUTPUT0 unchanged."""
    model_dir = Path(repo_dir) / "string_identity"
    _write_model(model_dir / "1" / "model.onnx", make_string_identity_model(), skip_existing)
    _write_text(model_dir / "config.pbtxt", STRING_IDENTITY_CONFIG, skip_existing)
    return model_dir


def write_simple_noconfig(repo_dir: Path, *, skip_existing: bool = False) -> Path:
    """``simple_noconfig``: x FP32 [batch,4] -> y = 2*x. Deliberately has no
    config.pbtxt, so the server must derive the configuration from the model."""
    model_dir = Path(repo_dir) / "simple_noconfig"
    _write_model(model_dir / "1" / "model.onnx", make_scale_model(2.0, 4), skip_existing)
    return model_dir


def write_add_versions(repo_dir: Path, *, skip_existing: bool = False) -> Path:
    """``add_versions``: version N computes OUTPUT0 = INPUT0 + N (N = 1, 2),
    INPUT0 FP32 [batch,4]; the config serves all versions."""
    model_dir = Path(repo_dir) / "add_versions"
    for version in (1, 2):
        _write_model(
            model_dir / str(version) / "model.onnx",
            make_add_constant_model(float(version), 4),
            skip_existing,
        )
    _write_text(model_dir / "config.pbtxt", ADD_VERSIONS_CONFIG, skip_existing)
    return model_dir


SMALL_MODELS = {
    "add_sub": write_add_sub,
    "string_identity": write_string_identity,
    "simple_noconfig": write_simple_noconfig,
    "add_versions": write_add_versions,
}


def write_all(repo_dir: Path, *, skip_existing: bool = False) -> list[Path]:
    """Write every small model into ``repo_dir``; returns the model directories."""
    return [writer(repo_dir, skip_existing=skip_existing) for writer in SMALL_MODELS.values()]
