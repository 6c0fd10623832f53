"""Ensembles through a real server process, driven by tritonclient HTTP and gRPC.

The JPEG ensemble is the example one (examples/ensemble_models: preprocess and postprocess Python
models around an ImageNet-shaped classifier). Here the classifier is a tiny ONNX model built with
onnx.helper with mobilenet_v2's input and output names: it scores "red", "green" and "blue" by the
mean of each colour channel, so a JPEG of a red square must come back labelled "red". When the
example repository has the real mobilenet_v2, scikit-image's cat goes through it as well.
"""

from __future__ import annotations

import io
import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from support.models import finish, write_model
from support.server import ServerProcess

from .grpc_support import mobilenet_available, running_grpc_server

pytestmark = pytest.mark.timeout(180)

Image = pytest.importorskip("PIL.Image", reason="the example ensemble needs Pillow")

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE_SOURCES = ROOT / "examples" / "ensemble_models"
EXAMPLE_MOBILENET = ROOT / "examples" / "model_repository" / "mobilenet_v2"
CLASSES = 1000
COLOURS = ["red", "green", "blue"]
CLIENT_TIMEOUT_S = 60.0
SLEEP_S = 0.4

TINY_CLASSIFIER_CONFIG = """
name: "mobilenet_v2"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1000 ] label_filename: "labels.txt" } ]
# A queue delay long enough that concurrent ensemble requests meet in one batch.
dynamic_batching { max_queue_delay_microseconds: 50000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

SLEEPER_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "SPAN" data_type: TYPE_FP64 dims: [ 2 ] }} ]
"""
SLEEPER_MODEL = f"""
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        start = time.time()
        time.sleep({SLEEP_S})
        span = np.array([start, time.time()], dtype=np.float64)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("SPAN", span)]) for _ in requests]
"""


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'{{ model_name: "{model}" model_version: -1 {ins} {outs} }}'


def _write_ensemble(repo: Path, name: str, io: str, steps: list[str]) -> None:
    (repo / name / "1").mkdir(parents=True)
    text = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n{io}\n'
    text += "ensemble_scheduling { step [ " + ", ".join(steps) + " ] }\n"
    (repo / name / "config.pbtxt").write_text(text, encoding="utf-8")


def tiny_classifier() -> bytes:
    """logits[k] = mean of channel k for k < 3 (red, green, blue), 0 for every other class."""
    weights = np.zeros((3, CLASSES), dtype=np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
            helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    return finish(graph).SerializeToString()


def copy_example_steps(repo: Path, labels: list[str]) -> None:
    """The example preprocess, postprocess and image_classifier folders, as build_models.py writes them."""
    for name in ("preprocess", "postprocess", "image_classifier"):
        shutil.copytree(ENSEMBLE_SOURCES / name, repo / name)
        (repo / name / "1").mkdir(exist_ok=True)
    (repo / "postprocess" / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def build_repository(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    labels = COLOURS + [f"class_{i}" for i in range(3, CLASSES)]
    model_dir = write_model(repo, "mobilenet_v2", tiny_classifier(), TINY_CLASSIFIER_CONFIG)
    (model_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    copy_example_steps(repo, labels)
    # Two Python models that sleep and report when they ran, side by side in one ensemble.
    for name in ("sleep_a", "sleep_b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(SLEEPER_CONFIG.format(name=name), encoding="utf-8")
        (repo / name / "1" / "model.py").write_text(textwrap.dedent(SLEEPER_MODEL), encoding="utf-8")
    _write_ensemble(
        repo,
        "branches",
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "SPAN_A" data_type: TYPE_FP64 dims: [ 2 ] }, '
        '{ name: "SPAN_B" data_type: TYPE_FP64 dims: [ 2 ] } ]',
        [
            _step("sleep_a", {"X": "IN"}, {"SPAN": "SPAN_A"}),
            _step("sleep_b", {"X": "IN"}, {"SPAN": "SPAN_B"}),
        ],
    )
    # Ensembles that must not load; everything else keeps serving.
    io = 'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    io += 'output [ { name: "OUT" data_type: TYPE_FP64 dims: [ 2 ] } ]'
    _write_ensemble(repo, "uses_unknown", io, [_step("no_such_model", {"X": "IN"}, {"SPAN": "OUT"})])
    _write_ensemble(repo, "unmapped", io, [_step("sleep_a", {"X": "nowhere"}, {"SPAN": "OUT"})])
    _write_ensemble(repo, "circle_a", io, [_step("circle_b", {"IN": "IN"}, {"OUT": "OUT"})])
    _write_ensemble(repo, "circle_b", io, [_step("circle_a", {"IN": "IN"}, {"OUT": "OUT"})])
    return repo


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[...] = rgb
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def http_image_input(*images: bytes) -> httpclient.InferInput:
    tensor = httpclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[i] for i in images], dtype=np.object_))
    return tensor


def grpc_image_input(*images: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[i] for i in images], dtype=np.object_))
    return tensor


def parse(entry: bytes) -> tuple[float, int, str]:
    probability, index, label = entry.decode().split(":", 2)
    return float(probability), int(index), label


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_repository(tmp_path_factory.mktemp("ensemble_repo"))
    log = tmp_path_factory.mktemp("ensemble_logs") / "server.log"
    # Not strictly ready: the repository holds ensembles that must fail to load.
    with running_grpc_server(repo, log, ["--strict-readiness=false"]) as process:
        yield process


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(
        server.http_url, connection_timeout=CLIENT_TIMEOUT_S, network_timeout=CLIENT_TIMEOUT_S, concurrency=8
    ) as client:
        yield client


@pytest.fixture(scope="module")
def grpc(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        yield client


def test_jpeg_ensemble_over_http(http: httpclient.InferenceServerClient) -> None:
    result = http.infer("image_classifier", [http_image_input(jpeg((250, 10, 10)))])
    labels = result.as_numpy("LABELS")
    assert labels.shape == (1, 5) and labels.dtype == np.object_
    top = [parse(e) for e in labels[0]]
    assert top[0][1:] == (0, "red")
    assert top[0][0] > top[1][0] and 0.0 < sum(p for p, _, _ in top) <= 1.0 + 1e-6
    assert result.get_response()["model_name"] == "image_classifier"


def test_jpeg_ensemble_over_grpc(grpc: grpcclient.InferenceServerClient) -> None:
    images = (jpeg((10, 10, 250)), jpeg((10, 240, 10), size=(100, 400)))
    result = grpc.infer("image_classifier", [grpc_image_input(*images)])
    labels = result.as_numpy("LABELS")
    assert labels.shape == (2, 5)
    assert [parse(row[0])[2] for row in labels] == ["blue", "green"]


def test_png_works_too(http: httpclient.InferenceServerClient) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((50, 60, 3), (20, 200, 20), dtype=np.uint8)).save(buffer, format="PNG")
    labels = http.infer("image_classifier", [http_image_input(buffer.getvalue())]).as_numpy("LABELS")
    assert parse(labels[0][0])[2] == "green"


def test_a_step_error_names_the_step(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as info:
        http.infer("image_classifier", [http_image_input(b"this is not a jpeg")])
    assert info.value.status() == "400"
    assert "in ensemble 'image_classifier', step 0 (model 'preprocess'):" in info.value.message()
    assert "not an image format Pillow reads" in info.value.message()
    with pytest.raises(InferenceServerException) as ginfo:
        grpc.infer("image_classifier", [grpc_image_input(b"GIF89a broken")])
    assert ginfo.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "step 0 (model 'preprocess')" in ginfo.value.message()


def test_ensemble_metadata_and_config(http: httpclient.InferenceServerClient) -> None:
    metadata = http.get_model_metadata("image_classifier")
    assert metadata["platform"] == "ensemble"
    assert metadata["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}]
    assert metadata["outputs"] == [{"name": "LABELS", "datatype": "BYTES", "shape": [-1, 5]}]
    config = http.get_model_config("image_classifier")
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["preprocess", "mobilenet_v2", "postprocess"]
    assert steps[1]["input_map"] == {"input": "pixels"} and steps[1]["model_version"] == -1
    assert config["instance_group"] == []


def test_parallel_branches_run_at_the_same_time(http: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    started = time.monotonic()
    result = http.infer("branches", [tensor])
    elapsed = time.monotonic() - started
    span_a, span_b = result.as_numpy("SPAN_A"), result.as_numpy("SPAN_B")
    assert max(span_a[0], span_b[0]) < min(span_a[1], span_b[1]), (span_a, span_b)
    assert elapsed < 2 * SLEEP_S, f"{elapsed:.2f}s: the branches ran one after the other"


def test_steps_batch_across_concurrent_ensemble_requests(http: httpclient.InferenceServerClient) -> None:
    before = http.get_inference_statistics("mobilenet_v2")["model_stats"][0]
    ensemble_before = http.get_inference_statistics("image_classifier")["model_stats"][0]["inference_count"]
    image = jpeg((200, 30, 30))
    pending = [http.async_infer("image_classifier", [http_image_input(image)]) for _ in range(8)]
    results = [p.get_result() for p in pending]
    assert all(parse(r.as_numpy("LABELS")[0][0])[2] == "red" for r in results)
    after = http.get_inference_statistics("mobilenet_v2")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 8
    assert after["execution_count"] - before["execution_count"] < 8, "no batch formed inside the ensemble"
    assert any(b["batch_size"] > 1 for b in after["batch_stats"])
    ensemble_stats = http.get_inference_statistics("image_classifier")["model_stats"][0]
    assert ensemble_stats["inference_count"] - ensemble_before == 8
    counts = {k: ensemble_stats["inference_stats"][k]["count"] for k in ("compute_input", "compute_infer")}
    assert len(set(counts.values())) == 1  # perf_analyzer insists the compute counts agree


def test_invalid_ensembles_are_unavailable_and_the_rest_serves(
    http: httpclient.InferenceServerClient,
) -> None:
    index = {row["name"]: row for row in http.get_model_repository_index()}
    for name in ("image_classifier", "preprocess", "postprocess", "mobilenet_v2", "branches"):
        assert index[name]["state"] == "READY", index[name]
    assert index["uses_unknown"]["state"] == "UNAVAILABLE"
    assert "contains models that are not available: no_such_model" in index["uses_unknown"]["reason"]
    assert index["unmapped"]["state"] == "UNAVAILABLE"
    assert (
        "step 0 (model 'sleep_a'): input 'X' is mapped to ensemble tensor 'nowhere'"
        in index["unmapped"]["reason"]
    )
    for name in ("circle_a", "circle_b"):
        assert index[name]["state"] == "UNAVAILABLE"
        assert "circular dependency between ensembles" in index[name]["reason"]
    assert not http.is_model_ready("unmapped")
    assert http.is_model_ready("image_classifier")


# --- the real example: mobilenet_v2 on scikit-image's cat ------------------------------------------
@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not mobilenet_available():
        pytest.skip("examples/model_repository/mobilenet_v2 is not built (make models)")
    repo = tmp_path_factory.mktemp("example_ensemble_repo")
    shutil.copytree(EXAMPLE_MOBILENET, repo / "mobilenet_v2")
    labels = (EXAMPLE_MOBILENET / "labels.txt").read_text(encoding="utf-8").splitlines()
    copy_example_steps(repo, labels)
    log = tmp_path_factory.mktemp("example_ensemble_logs") / "server.log"
    with running_grpc_server(repo, log) as process:
        yield process


def _chelsea_jpeg() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    buffer = io.BytesIO()
    Image.fromarray(skimage_data.chelsea()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_the_example_ensemble_finds_the_cat(example_server: ServerProcess) -> None:
    cat = _chelsea_jpeg()
    with httpclient.InferenceServerClient(
        example_server.http_url, network_timeout=CLIENT_TIMEOUT_S
    ) as client:
        labels = client.infer("image_classifier", [http_image_input(cat)]).as_numpy("LABELS")[0]
    names = [parse(e)[2] for e in labels]
    assert names[0] == "Egyptian cat", names
    with grpcclient.InferenceServerClient(example_server.grpc_url) as client:
        labels = client.infer("image_classifier", [grpc_image_input(cat, cat)]).as_numpy("LABELS")
    assert [parse(row[0])[2] for row in labels] == ["Egyptian cat", "Egyptian cat"]


def test_the_example_ensemble_matches_client_side_preprocessing(example_server: ServerProcess) -> None:
    """The ensemble's top-5 equal mobilenet_v2's on scripts/generate_input.py's preprocessing."""
    cat = _chelsea_jpeg()
    generate_input = _load_generate_input()
    pixels = generate_input.preprocess(np.asarray(Image.open(io.BytesIO(cat)).convert("RGB")))[None]
    with httpclient.InferenceServerClient(
        example_server.http_url, network_timeout=CLIENT_TIMEOUT_S
    ) as client:
        tensor = httpclient.InferInput("input", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels)
        logits = client.infer("mobilenet_v2", [tensor]).as_numpy("logits")[0]
        labels = client.infer("image_classifier", [http_image_input(cat)]).as_numpy("LABELS")[0]
    assert [parse(e)[1] for e in labels] == list(np.argsort(-logits, kind="stable")[:5])


def _load_generate_input() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "generate_input_for_ensemble", ROOT / "scripts" / "generate_input.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_requests_through_the_example(example_server: ServerProcess) -> None:
    cat = _chelsea_jpeg()
    with httpclient.InferenceServerClient(
        example_server.http_url, network_timeout=CLIENT_TIMEOUT_S, concurrency=4
    ) as client:
        pending = [client.async_infer("image_classifier", [http_image_input(cat)]) for _ in range(8)]
        tops = [parse(p.get_result().as_numpy("LABELS")[0][0])[2] for p in pending]
    assert tops == ["Egyptian cat"] * 8
