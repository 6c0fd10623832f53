"""Version 2 of the example classifier: an INT8 copy of version 1, made with onnxruntime.quantization.

Static quantization in the QDQ format: weights INT8 per output channel, activations UINT8 with
ranges calibrated on a few real photos (the sample photos the build classifies anyway). Static
rather than dynamic because MobileNetV2 is convolutions: dynamic quantization only covers MatMul
well, and per-channel weights keep the depthwise convolutions' accuracy. The result is about a
quarter of version 1's size and answers the same top-1 class for the sample photos; the build
checks that (build_models.verify_classifier), so version 2 is a realistic canary for version 1.

Only onnxruntime (and onnx) are needed; the module imports them when it runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _calibration_reader(batch: np.ndarray, input_name: str):
    """A CalibrationDataReader feeding the photos one at a time (batch dim 1, as served)."""
    from onnxruntime.quantization import CalibrationDataReader

    class PhotoReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(
                [{input_name: image[np.newaxis]} for image in batch]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return PhotoReader()


def quantize_classifier(
    source: Path, target: Path, calibration: np.ndarray, input_name: str = "input"
) -> None:
    """Write an INT8 copy of the ONNX model `source` to `target` (atomically).

    `calibration` is a float32 batch of preprocessed images whose activations set the ranges.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "model.onnx"
        # Folds and annotates shapes so every Conv gets its QDQ pair; the shapes are static but for
        # the batch dim, so ONNX's own shape inference suffices (no symbolic pass, no sympy).
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            _calibration_reader(calibration, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        quantized.replace(target)
