"""Encoded image bytes -> mobilenet_v2's input tensor, written against Triton's Python backend API.

IMAGE is a BYTES tensor [batch, 1], one encoded image (JPEG, PNG, ...) per row. PIXELS is float32
[batch, 3, 224, 224]: the image decoded with Pillow (EXIF orientation applied, converted to RGB),
its shorter side resized to 256 (bilinear), the centre 224x224 crop, scaled to [0, 1] and
normalised with the ImageNet mean and std, channels first. This is exactly what
scripts/generate_input.py does on the client side.
"""

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE_SHORTER = 256
CROP = 224


def decode(data: bytes) -> Image.Image:
    """The image in `data` as an RGB Pillow image, upright."""
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def preprocess(image: Image.Image) -> np.ndarray:
    """RGB image -> float32 [3, 224, 224]."""
    width, height = image.size
    if height <= width:
        size = (int(RESIZE_SHORTER * width / height), RESIZE_SHORTER)
    else:
        size = (RESIZE_SHORTER, int(RESIZE_SHORTER * height / width))
    resized = image.resize(size, Image.Resampling.BILINEAR)
    top = round((size[1] - CROP) / 2.0)
    left = round((size[0] - CROP) / 2.0)
    crop = np.asarray(resized, dtype=np.float32)[top : top + CROP, left : left + CROP]
    normalised = (crop / 255.0 - MEAN) / STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                pixels = np.stack([preprocess(decode(bytes(row[0]))) for row in images])
            except UnidentifiedImageError:
                responses.append(_invalid("IMAGE holds bytes that are not an image format Pillow reads"))
                continue
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                responses.append(_invalid(f"IMAGE could not be decoded: {exc}"))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PIXELS", pixels)]))
        return responses


def _invalid(message):
    error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    return pb_utils.InferenceResponse(error=error)
