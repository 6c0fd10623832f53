"""The example ensemble's Python steps, called directly: same preprocessing as the client script, top-k."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import triton_python_backend_utils as pb_utils

Image = pytest.importorskip("PIL.Image", reason="the example ensemble needs Pillow")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ensemble_models"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (500, 256)])
def test_preprocess_matches_the_client_script(size: tuple[int, int], tmp_path: Path) -> None:
    model = _load(EXAMPLE / "preprocess" / "1" / "model.py", "example_preprocess")
    client = _load(ROOT / "scripts" / "generate_input.py", "example_generate_input")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    data = _encoded(image, "JPEG")
    (tmp_path / "photo.jpg").write_bytes(data)
    ours = model.preprocess(model.decode(data))
    theirs = client.preprocess(client.load_image(tmp_path / "photo.jpg"))
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def _request(name: str, array: np.ndarray) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest(
        model_name="x", inputs=[pb_utils.Tensor(name, array)], requested_output_names=[]
    )


def test_preprocess_answers_bad_bytes_with_an_error_for_that_request_only() -> None:
    model = _load(EXAMPLE / "preprocess" / "1" / "model.py", "example_preprocess_errors").TritonPythonModel()
    png = _encoded(np.zeros((10, 20, 4), dtype=np.uint8), "PNG")  # RGBA: converted to RGB
    good = _request("IMAGE", np.array([[png], [png]], dtype=np.object_))
    bad = _request("IMAGE", np.array([[b"nope"]], dtype=np.object_))
    first, second = model.execute([good, bad])
    assert first.output_tensors()[0].as_numpy().shape == (2, 3, 224, 224)
    assert second.has_error() and "not an image format Pillow reads" in second.error().message()


def test_postprocess_gives_the_top_k_most_likely_first(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    config = {"output": [{"name": "LABELS", "data_type": "TYPE_STRING", "dims": [3]}]}
    model = _load(EXAMPLE / "postprocess" / "1" / "model.py", "example_postprocess").TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path)})
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    (response,) = model.execute([_request("LOGITS", logits)])
    labels = response.output_tensors()[0].as_numpy()
    assert labels.shape == (2, 3)
    rows = [[entry.decode().split(":") for entry in row] for row in labels]
    assert [[(i, label) for _, i, label in row] for row in rows] == [
        [("1", "b"), ("3", "d"), ("2", "c")],
        [("0", "a"), ("1", "b"), ("2", "c")],
    ]
    probabilities = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert float(rows[0][0][0]) == pytest.approx(probabilities[1], abs=1e-6)
