"""ONNX models and model repositories for the tests, built with onnx.helper.

The example models come from examples/small_models.py (imported by path); the extra ones here cover
every numeric datatype, classification with a labels file, a non-batching model, `reshape`, and two
broken models (a config that does not parse, a model file that is not ONNX).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODELS_PATH = ROOT / "examples" / "small_models.py"


def load_small_models() -> ModuleType:
    """examples/small_models.py as a module, imported by file path."""
    name = "modelport_examples_small_models"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SMALL_MODELS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


small_models = load_small_models()

# protocol datatype -> (ONNX element type, numpy dtype); BYTES is covered by string_identity.
NUMERIC_TYPES: dict[str, tuple[int, np.dtype]] = {
    "BOOL": (TensorProto.BOOL, np.dtype(np.bool_)),
    "INT8": (TensorProto.INT8, np.dtype(np.int8)),
    "INT16": (TensorProto.INT16, np.dtype(np.int16)),
    "INT32": (TensorProto.INT32, np.dtype(np.int32)),
    "INT64": (TensorProto.INT64, np.dtype(np.int64)),
    "UINT8": (TensorProto.UINT8, np.dtype(np.uint8)),
    "UINT16": (TensorProto.UINT16, np.dtype(np.uint16)),
    "UINT32": (TensorProto.UINT32, np.dtype(np.uint32)),
    "UINT64": (TensorProto.UINT64, np.dtype(np.uint64)),
    "FP16": (TensorProto.FLOAT16, np.dtype(np.float16)),
    "FP32": (TensorProto.FLOAT, np.dtype(np.float32)),
    "FP64": (TensorProto.DOUBLE, np.dtype(np.float64)),
}

CLASSIFIER_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def identity_model_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


# --- graphs ---------------------------------------------------------------------------------


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", small_models.OPSET)])
    model.ir_version = small_models.IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def identity_graph(elem_type: int, shape: list[int | str], name: str = "identity") -> onnx.ModelProto:
    """OUTPUT0 = INPUT0."""
    return finish(
        helper.make_graph(
            [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
            name,
            [helper.make_tensor_value_info("INPUT0", elem_type, shape)],
            [helper.make_tensor_value_info("OUTPUT0", elem_type, shape)],
        )
    )


def classifier_graph(classes: int = 10) -> onnx.ModelProto:
    """OUTPUT0 = softmax(INPUT0) and RAW = INPUT0, FP32 [batch, classes]."""
    shape: list[int | str] = ["batch", classes]
    return finish(
        helper.make_graph(
            [
                helper.make_node("Softmax", ["INPUT0"], ["OUTPUT0"], axis=-1),
                helper.make_node("Identity", ["INPUT0"], ["RAW"]),
            ],
            "classifier",
            [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, shape)],
            [
                helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, shape),
                helper.make_tensor_value_info("RAW", TensorProto.FLOAT, shape),
            ],
        )
    )


def scale_graph(shape: list[int | str], factor: float = 2.0) -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 * factor (FP32)."""
    return finish(
        helper.make_graph(
            [helper.make_node("Mul", ["INPUT0", "factor"], ["OUTPUT0"])],
            "scale",
            [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, shape)],
            initializer=[helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])],
        )
    )


def reshape_graph() -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 + 1 on FP32 [batch]; OUTPUT1 = INPUT1 * 2 on FP32 [batch, 6]."""
    return finish(
        helper.make_graph(
            [
                helper.make_node("Add", ["INPUT0", "one"], ["OUTPUT0"]),
                helper.make_node("Mul", ["INPUT1", "two"], ["OUTPUT1"]),
            ],
            "reshape",
            [
                helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch"]),
                helper.make_tensor_value_info("INPUT1", TensorProto.FLOAT, ["batch", 6]),
            ],
            [
                helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch"]),
                helper.make_tensor_value_info("OUTPUT1", TensorProto.FLOAT, ["batch", 6]),
            ],
            initializer=[
                helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            ],
        )
    )


def write_onnx(path: Path, model: onnx.ModelProto) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


# --- model folders ----------------------------------------------------------------------------


def write_model(
    repo: Path,
    name: str,
    model: onnx.ModelProto | bytes,
    config: str | None,
    versions: tuple[int, ...] = (1,),
) -> Path:
    """<repo>/<name>/config.pbtxt (when given) and <repo>/<name>/<v>/model.onnx."""
    model_dir = repo / name
    for version in versions:
        target = model_dir / str(version) / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    return model_dir


def write_identity(repo: Path, datatype: str) -> Path:
    elem_type, _ = NUMERIC_TYPES[datatype]
    name = identity_model_name(datatype)
    config = f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_{datatype} dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_{datatype} dims: [ -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
    return write_model(repo, name, identity_graph(elem_type, ["batch", "n"], name), config)


def write_classifier(repo: Path) -> Path:
    config = """
name: "classifier"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" },
  { name: "RAW" data_type: TYPE_FP32 dims: [ 10 ] }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
    model_dir = write_model(repo, "classifier", classifier_graph(10), config)
    (model_dir / "labels.txt").write_text("\n".join(CLASSIFIER_LABELS) + "\n", encoding="utf-8")
    return model_dir


def write_nobatch(repo: Path) -> Path:
    config = """
name: "nobatch"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
    return write_model(repo, "nobatch", scale_graph([2, 3], 2.0), config)


def write_reshape(repo: Path) -> Path:
    config = """
name: "reshape"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape: { shape: [ 6 ] } }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape: { shape: [ 6 ] } }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
    return write_model(repo, "reshape", reshape_graph(), config)


BROKEN_CONFIG_TEXT = (
    'name: "broken_config"\nmax_batch_size: 8\ninput [ { name: "INPUT0" data_type: NOT_A_TYPE'
)


def write_broken_config(repo: Path) -> Path:
    """A valid model whose config.pbtxt does not parse."""
    return write_model(
        repo, "broken_config", identity_graph(TensorProto.FLOAT, ["batch", 4]), BROKEN_CONFIG_TEXT
    )


def write_broken_onnx(repo: Path) -> Path:
    """A complete config.pbtxt beside a model.onnx that is not ONNX."""
    config = """
name: "broken_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
    return write_model(repo, "broken_onnx", b"this is not an onnx model\x00\x01\x02", config)


# --- repositories -----------------------------------------------------------------------------

HEALTHY_MODELS = ("add_sub", "string_identity")
BROKEN_MODELS = ("broken_config", "broken_onnx")


def build_full_repository(repo: Path) -> Path:
    """Every test model, including the two broken ones."""
    repo.mkdir(parents=True, exist_ok=True)
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    small_models.write_simple_noconfig(repo)
    small_models.write_add_versions(repo)
    for datatype in NUMERIC_TYPES:
        write_identity(repo, datatype)
    write_classifier(repo)
    write_nobatch(repo)
    write_reshape(repo)
    write_broken_config(repo)
    write_broken_onnx(repo)
    return repo


def build_healthy_repository(repo: Path) -> Path:
    """Only models that load."""
    repo.mkdir(parents=True, exist_ok=True)
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    return repo


SLOW_WIDTH = 256


def slow_model(matmuls: int, weight: np.ndarray | None = None) -> onnx.ModelProto:
    """A model whose run time grows with its input width R, to keep an instance busy on purpose.

    INPUT0 [batch, R] is broadcast to [batch, R, 256] and pushed through `matmuls` matmuls by
    `weight` (identity by default), then summed: OUTPUT0 [batch, 1]; with the identity,
    OUTPUT0 = 256 * sum(INPUT0 row).
    """
    if weight is None:
        weight = np.eye(SLOW_WIDTH, dtype=np.float32)
    initializers = [
        numpy_helper.from_array(weight.astype(np.float32), "W"),
        numpy_helper.from_array(np.ones((1, SLOW_WIDTH), np.float32), "ONES"),
        numpy_helper.from_array(np.array([2], np.int64), "LAST"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "INNER"),
        numpy_helper.from_array(np.array([1], np.int64), "SECOND"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["INPUT0", "LAST"], ["column"]),
        helper.make_node("Mul", ["column", "ONES"], ["h0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"h{i}", "W"], [f"h{i + 1}"]) for i in range(matmuls)]
    nodes += [
        helper.make_node("ReduceSum", [f"h{matmuls}", "INNER"], ["total"], keepdims=0),
        helper.make_node("Unsqueeze", ["total", "SECOND"], ["OUTPUT0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", "rows"])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=initializers,
    )
    return finish(graph)


STUCK_MODEL_PY = '''
import threading
import numpy as np
import triton_python_backend_utils as pb_utils

NEVER = threading.Event()


class TritonPythonModel:
    def execute(self, requests):
        # IN > 0 never returns (a hung model); IN == 0 answers at once.
        if any(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0] > 0 for r in requests):
            NEVER.wait(600)
        out = pb_utils.Tensor("OUT", np.zeros(1, np.float32))
        return [pb_utils.InferenceResponse([out]) for _ in requests]
'''


def write_stuck_model(repo: Path, name: str = "stuck", isolated: bool = False) -> Path:
    """A Python model whose execute never returns for IN > 0 (in the server, or in its own process)."""
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(STUCK_MODEL_PY)
    isolation = (
        'parameters { key: "MODELPORT_ISOLATION" value { string_value: "process" } }' if isolated else ""
    )
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        f'instance_group [ {{ count: 1 kind: KIND_CPU }} ]\n{isolation}\n'
    )
    return folder


SLEEPY_MODEL_PY = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            seconds = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            time.sleep(float(seconds[0]))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", seconds)]))
        return responses
"""


def write_sleepy_model(repo: Path, instances: int, name: str = "sleepy") -> Path:
    """A Python model that sleeps IN seconds per request and answers IN, on `instances` instances."""
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(SLEEPY_MODEL_PY)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
    )
    return folder
