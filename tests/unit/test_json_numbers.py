"""Numbers in JSON tensor data, read as Triton reads them: each value of its datatype's JSON kind."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelport.codecs.json_v2 import decode_request
from modelport.errors import InvalidInput

SIGNED = "attempt to access JSON non-signed-integer as signed-integer"
UNSIGNED = "attempt to access JSON non-unsigned-integer as unsigned-integer"
NUMBER = "attempt to access JSON non-number as double"
BOOLEAN = "attempt to access JSON non-boolean as boolean"


def _decode(datatype: str, data: Any, shape: list[int]) -> np.ndarray:
    doc = {"inputs": [{"name": "I", "datatype": datatype, "shape": shape, "data": data}]}
    return decode_request(json.dumps(doc).encode(), None, "m").inputs[0].data


def _refused(datatype: str, data: Any, shape: list[int]) -> str:
    with pytest.raises(InvalidInput) as raised:
        _decode(datatype, data, shape)
    return raised.value.message


@pytest.mark.parametrize(
    ("datatype", "data", "reason"),
    [
        ("FP32", ["1.5"], NUMBER),
        ("FP32", [None], NUMBER),
        ("FP64", [True], NUMBER),
        ("FP64", [{"v": 1}], NUMBER),
        ("INT32", [1.5], SIGNED),
        ("INT32", [1.0], SIGNED),  # a JSON number with a fraction part is not an integer, even .0
        ("INT64", ["7"], SIGNED),
        ("INT16", [3, True], SIGNED),
        ("UINT16", [2, "2"], UNSIGNED),
        ("UINT64", [18446744073709551616], UNSIGNED),  # past uint64: JSON parses it as a double
        ("BOOL", [1], BOOLEAN),
        ("BOOL", ["false"], BOOLEAN),
    ],
)
def test_a_value_of_another_kind_is_refused(datatype: str, data: list[Any], reason: str) -> None:
    message = _refused(datatype, data, [len(data)])
    assert message == f"Unable to parse 'data' of input 'I' as {datatype}: {reason}"


def test_the_kind_of_every_value_counts_not_only_the_first() -> None:
    assert _refused("FP32", [[1.0, 2.0], [3.0, "4"]], [2, 2]).endswith(NUMBER)
    assert _refused("INT8", [1, 2, 3, None], [4]).endswith(SIGNED)


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("FP32", [1, 2.5, -3], [1.0, 2.5, -3.0]),  # integers are numbers
        ("FP64", [[0.1], [2]], [0.1, 2.0]),
        ("INT8", [-128, 127], [-128, 127]),
        ("UINT64", [0, 18446744073709551615], [0, 18446744073709551615]),
        ("BOOL", [[True], [False]], [True, False]),
    ],
)
def test_values_of_the_right_kind_are_read(datatype: str, data: list[Any], expected: list[Any]) -> None:
    array = _decode(datatype, data, [len(expected)])
    assert array.tolist() == expected


def test_nesting_may_be_uneven_as_in_triton() -> None:
    array = _decode("INT32", [1, [2, [3, [4]]], [], [[5]]], [5])
    assert array.tolist() == [1, 2, 3, 4, 5]


def test_empty_data_for_a_zero_element_shape() -> None:
    assert _decode("FP32", [[], []], [2, 0]).shape == (2, 0)


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", [1e308]),
        ("FP32", [1.0, -3.5e38]),
        ("FP32", [2**200]),
        ("INT8", [300]),
        ("UINT8", [-1]),
        ("INT64", [2**63]),
    ],
)
def test_a_value_out_of_the_datatypes_range_is_refused(datatype: str, data: list[Any]) -> None:
    assert _refused(datatype, data, [len(data)]).startswith(
        f"Unable to parse 'data' of input 'I' as {datatype}: "
    )


def test_the_edges_of_the_range_are_read() -> None:
    biggest = float(np.finfo(np.float32).max)
    assert _decode("FP32", [biggest, -biggest, 1e-50], [3]).tolist() == [biggest, -biggest, 0.0]
    assert _decode("FP64", [1e308, -1e308], [2]).tolist() == [1e308, -1e308]
