"""The classification extension's "score:index[:label]" strings."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.core.classification import classify
from modelport.errors import InvalidInput

LABELS = ["zero", "one", "two"]


def test_triton_example() -> None:
    data = np.array([0.1, 0.9, 0.5, 0, 0, 0], dtype=np.float32)
    result = classify(data, "FP32", 3, LABELS, batched=False)
    assert result.shape == (3,)
    assert result.dtype == object
    assert list(result) == [b"0.900000:1:one", b"0.500000:2:two", b"0.100000:0:zero"]


def test_indexes_past_the_labels_get_no_label() -> None:
    data = np.array([0.0, 0.1, 0.2, 0.3, 0.9], dtype=np.float32)
    assert list(classify(data, "FP32", 2, LABELS, batched=False)) == [b"0.900000:4", b"0.300000:3"]


def test_without_labels() -> None:
    assert list(classify(np.array([1.5, 2.5]), "FP64", 1, None, batched=False)) == [b"2.500000:1"]


def test_batched_is_top_k_per_row() -> None:
    data = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.1]], dtype=np.float32)
    result = classify(data, "FP32", 2, LABELS, batched=True)
    assert result.shape == (2, 2)
    assert result.tolist() == [
        [b"0.900000:1:one", b"0.500000:2:two"],
        [b"0.700000:0:zero", b"0.200000:1:one"],
    ]


def test_batched_rows_are_flattened_past_the_batch_dim() -> None:
    data = np.array([[[1, 4], [3, 2]]], dtype=np.float32)  # [batch=1, 2, 2]
    assert classify(data, "FP32", 2, None, batched=True).tolist() == [[b"4.000000:1", b"3.000000:2"]]


def test_non_batched_tensor_is_one_item() -> None:
    data = np.array([[1, 4], [3, 2]], dtype=np.float32)
    assert classify(data, "FP32", 1, None, batched=False).tolist() == [b"4.000000:1"]


def test_k_larger_than_classes_is_clamped() -> None:
    assert classify(np.array([[1, 2]], dtype=np.float32), "FP32", 10, None, batched=True).shape == (1, 2)


@pytest.mark.parametrize(("dtype", "name"), [(np.int32, "INT32"), (np.uint8, "UINT8"), (np.int64, "INT64")])
def test_integer_values_are_plain_integers(dtype: type, name: str) -> None:
    data = np.array([5, 250 if name == "UINT8" else -1, 9], dtype=dtype)
    assert classify(data, name, 1, None, batched=False).tolist() == [b"250:1" if name == "UINT8" else b"9:2"]


def test_negative_and_large_floats_use_six_decimals() -> None:
    data = np.array([-0.25, 1234567.5], dtype=np.float64)
    assert classify(data, "FP64", 2, None, batched=False).tolist() == [b"1234567.500000:1", b"-0.250000:0"]


def test_non_ascii_labels() -> None:
    assert classify(
        np.array([1.0], dtype=np.float32), "FP32", 1, ["chat égyptien"], batched=False
    ).tolist() == ["1.000000:0:chat égyptien".encode()]


@pytest.mark.parametrize("name", ["BOOL", "BYTES", "FP16", "BF16"])
def test_unsupported_types(name: str) -> None:
    with pytest.raises(InvalidInput, match="class result not available for output due to unsupported type"):
        classify(np.zeros(2), name, 1, None, batched=False)
