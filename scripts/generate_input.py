#!/usr/bin/env python3
"""Turn a photo into an inference request body for the ``mobilenet_v2`` example.

Preprocessing (same as used when the model was verified at build time):
shorter side resized to 256 (bilinear), centre crop 224x224, scaled to [0, 1],
normalised with the ImageNet mean/std, laid out CHW as float32.

Examples::

    # KServe v2 JSON body, top-5 classification requested
    python scripts/generate_input.py --sample chelsea > cat.json
    curl -s -H 'Content-Type: application/json' --data-binary @cat.json \\
        localhost:8000/v2/models/mobilenet_v2/infer

    # Triton binary-tensor body; the header length is printed on stderr
    python scripts/generate_input.py --image photo.jpg --format binary --output cat.bin
    curl -s -H 'Inference-Header-Content-Length: <N>' \\
        -H 'Content-Type: application/octet-stream' --data-binary @cat.bin \\
        localhost:8000/v2/models/mobilenet_v2/infer

Run-time dependencies: numpy and Pillow; scikit-image only for ``--sample``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE_SHORTER = 256
CROP_SIZE = 224
SAMPLES = ("chelsea", "coffee", "astronaut")

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build_binary_body",
    "build_json_body",
    "load_image",
    "load_sample",
    "preprocess",
]


# --------------------------------------------------------------------------
# image handling
# --------------------------------------------------------------------------

def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Coerce grayscale / RGBA / float images to an HxWx3 uint8 array."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    elif arr.shape[-1] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {arr.shape[-1]}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0  # float image in [0, 1]
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def preprocess(image: np.ndarray) -> np.ndarray:
    """HxWx3 RGB image (uint8, or float in [0, 1]) -> float32 array [3, 224, 224].

    Resize so the shorter side is 256 px (bilinear, Pillow), take the central
    224x224 crop, scale to [0, 1], subtract the ImageNet mean and divide by
    the ImageNet std per channel, and transpose to CHW.
    """
    from PIL import Image

    rgb = _to_rgb_uint8(image)
    height, width = rgb.shape[:2]
    if height <= width:
        new_h, new_w = RESIZE_SHORTER, int(RESIZE_SHORTER * width / height)
    else:
        new_h, new_w = int(RESIZE_SHORTER * height / width), RESIZE_SHORTER
    resized = Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR)

    top = round((new_h - CROP_SIZE) / 2.0)
    left = round((new_w - CROP_SIZE) / 2.0)
    crop = np.asarray(resized, dtype=np.float32)[top:top + CROP_SIZE, left:left + CROP_SIZE]

    normalised = (crop / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


def load_image(path: str | Path) -> np.ndarray:
    """Decode a JPEG/PNG/... file with Pillow into an HxWx3 uint8 RGB array,
    applying any EXIF orientation tag (as phone photos often carry one)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return np.asarray(img.convert("RGB"))


def load_sample(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos: chelsea (a cat), coffee, astronaut."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("--sample needs scikit-image: pip install scikit-image") from exc
    return getattr(skimage.data, name)()


# --------------------------------------------------------------------------
# request bodies
# --------------------------------------------------------------------------

def _outputs_spec(output_name: str, classification: int) -> list[dict]:
    spec: dict = {"name": output_name}
    if classification > 0:
        spec["parameters"] = {"classification": classification}
    return [spec]


def _float32_json_array(values: np.ndarray) -> str:
    """JSON array of float32 values in their shortest round-trip form
    (about half the size of float64 reprs, and parses back bit-exactly)."""
    flat = np.asarray(values, dtype=np.float32).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("tensor contains NaN or infinity, which JSON cannot carry")
    return "[" + ",".join(map(str, flat)) + "]"


def build_json_body(
    tensor: np.ndarray,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    classification: int = 5,
) -> bytes:
    """KServe v2 JSON request body for a float32 tensor (e.g. shape [1,3,224,224])."""
    tensor = np.asarray(tensor, dtype=np.float32)
    # Assemble with a placeholder so the large data array is serialised by the
    # float32-aware formatter rather than json.dumps.
    placeholder = "__MODELPORT_TENSOR_DATA__"
    body = {
        "inputs": [{
            "name": input_name,
            "datatype": "FP32",
            "shape": list(tensor.shape),
            "data": placeholder,
        }],
        "outputs": _outputs_spec(output_name, classification),
    }
    text = json.dumps(body, separators=(",", ":"))
    text = text.replace(json.dumps(placeholder), _float32_json_array(tensor), 1)
    return text.encode("utf-8")


def build_binary_body(
    tensor: np.ndarray,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    classification: int = 5,
) -> tuple[bytes, int]:
    """Triton binary-tensor request body for a float32 tensor.

    Returns ``(body, header_length)``; ``header_length`` is the value to send
    in the ``Inference-Header-Content-Length`` HTTP header.
    """
    raw = np.ascontiguousarray(tensor, dtype="<f4").tobytes()
    header = {
        "inputs": [{
            "name": input_name,
            "datatype": "FP32",
            "shape": list(np.shape(tensor)),
            "parameters": {"binary_data_size": len(raw)},
        }],
        "outputs": _outputs_spec(output_name, classification),
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return header_bytes + raw, len(header_bytes)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build an inference request body for mobilenet_v2 from a photo.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="path to a JPEG/PNG (any Pillow-readable) image")
    source.add_argument("--sample", choices=SAMPLES, help="one of scikit-image's bundled photos")
    parser.add_argument("--format", choices=("json", "binary"), default="json",
                        help="KServe v2 JSON body or Triton binary-tensor body (default: json)")
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="write the body to this file instead of stdout")
    parser.add_argument("--input-name", default="input", help="model input name (default: input)")
    parser.add_argument("--output-name", default="logits", help="model output name (default: logits)")
    parser.add_argument("--classification", type=int, default=5, metavar="K",
                        help="ask the server for the top-K classes; 0 requests the raw output "
                             "tensor (default: 5)")
    parser.add_argument("--batch", type=int, default=1,
                        help="repeat the image this many times along the batch axis (default: 1)")
    args = parser.parse_args(argv)
    if args.classification < 0:
        parser.error("--classification must be >= 0")
    if args.batch < 1:
        parser.error("--batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    image = load_image(args.image) if args.image is not None else load_sample(args.sample)
    chw = preprocess(image)
    tensor = np.broadcast_to(chw, (args.batch, *chw.shape))

    names = dict(input_name=args.input_name, output_name=args.output_name,
                 classification=args.classification)
    if args.format == "json":
        body = build_json_body(tensor, **names)
        header_length = None
    else:
        body, header_length = build_binary_body(tensor, **names)

    if args.output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        args.output.write_bytes(body)

    if header_length is not None:
        print(f"Inference-Header-Content-Length: {header_length}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
