"""The classification extension: the top-k of an output as "score:index[:label]" BYTES strings."""

from __future__ import annotations

import numpy as np

from modelport.errors import InvalidInput

_UNSUPPORTED = {"BOOL", "BYTES", "FP16", "BF16"}


def classify(
    data: np.ndarray, datatype: str, k: int, labels: list[str] | None, batched: bool
) -> np.ndarray:
    """Top-k per batch item (or of the whole tensor when not batched), shape [batch, k] or [k]."""
    if datatype in _UNSUPPORTED:
        raise InvalidInput(f"class result not available for output due to unsupported type '{datatype}'")
    rows = data.reshape(data.shape[0], -1) if batched and data.ndim > 0 else data.reshape(1, -1)
    count = min(k, rows.shape[1])
    result = np.empty((rows.shape[0], count), dtype=object)
    integral = datatype.startswith(("INT", "UINT"))
    for r, row in enumerate(rows):
        top = np.argsort(-row.astype(np.float64), kind="stable")[:count]
        for c, index in enumerate(top):
            value = str(int(row[index])) if integral else f"{float(row[index]):f}"
            label = labels[index] if labels is not None and index < len(labels) else None
            text = f"{value}:{index}:{label}" if label is not None else f"{value}:{index}"
            result[r, c] = text.encode("utf-8")
    return result if batched else result[0]
