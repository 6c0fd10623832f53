"""Config validation reports every problem with the model, the file and the field."""

from __future__ import annotations

import pytest

from modelport.config.completion import apply_defaults
from modelport.config.model_config import parse_pbtxt
from modelport.config.validation import validate
from modelport.errors import ErrorCode, InvalidInput

SOURCE = "/repo/m/config.pbtxt"
GOOD = """
name: "m"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _problems(text: str) -> str:
    config = parse_pbtxt(text, SOURCE)
    apply_defaults(config, gpu_count=0)
    with pytest.raises(InvalidInput) as info:
        validate(config, SOURCE)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def test_a_good_config_passes() -> None:
    config = parse_pbtxt(GOOD, SOURCE)
    apply_defaults(config, gpu_count=0)
    validate(config, SOURCE)


def test_message_names_model_and_file() -> None:
    message = _problems(GOOD + 'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]')
    assert message.startswith("invalid model configuration for model 'm' (/repo/m/config.pbtxt): ")


def test_duplicate_input_names() -> None:
    assert "input 'IN': duplicate input name" in _problems(
        GOOD + 'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]'
    )


def test_duplicate_output_names() -> None:
    assert "output 'OUT': duplicate output name" in _problems(
        GOOD + 'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]'
    )


def test_missing_name_and_data_type() -> None:
    message = _problems(GOOD + "input [ { dims: [ 1 ] } ]")
    assert "input is missing a name" in message
    assert "data_type must be specified" in message


def test_missing_dims() -> None:
    assert "input 'X': dims must be specified" in _problems(
        GOOD + 'input [ { name: "X" data_type: TYPE_FP32 } ]'
    )


@pytest.mark.parametrize("dims", ["[ 0 ]", "[ 4, -2 ]"])
def test_bad_dims(dims: str) -> None:
    message = _problems(GOOD + f'input [ {{ name: "X" data_type: TYPE_FP32 dims: {dims} }} ]')
    assert "input 'X': dims must be -1 or >= 1" in message


def test_reshape_with_different_element_count() -> None:
    message = _problems(
        GOOD + 'input [ { name: "X" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape: { shape: [ 5 ] } } ]'
    )
    assert "reshape [5] has a different element count from dims [2, 3]" in message


def test_reshape_with_different_variable_dims() -> None:
    message = _problems(
        GOOD + 'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1, 3 ] reshape: { shape: [ 3 ] } } ]'
    )
    assert "must have as many -1 dims" in message


def test_scalar_reshape_of_dims_one_is_valid() -> None:
    config = parse_pbtxt(
        GOOD + 'input [ { name: "S" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]', SOURCE
    )
    apply_defaults(config, gpu_count=0)
    validate(config, SOURCE)


def test_negative_max_batch_size() -> None:
    assert "max_batch_size must be >= 0, got -1" in _problems(
        GOOD.replace("max_batch_size: 8", "max_batch_size: -1")
    )


def test_preferred_batch_size_above_max_batch_size() -> None:
    message = _problems(GOOD + "dynamic_batching { preferred_batch_size: [ 4, 16 ] }")
    assert "dynamic_batching.preferred_batch_size 16 must be between 1 and max_batch_size 8" in message
    assert "preferred_batch_size 4 " not in message


def test_dynamic_batching_needs_batching() -> None:
    text = GOOD.replace("max_batch_size: 8", "max_batch_size: 0") + "dynamic_batching { }"
    assert "dynamic_batching requires max_batch_size > 0" in _problems(text)


@pytest.mark.parametrize("level", [0, 3])
def test_default_priority_level_out_of_range(level: int) -> None:
    text = GOOD + f"dynamic_batching {{ priority_levels: 2 default_priority_level: {level} }}"
    assert f"dynamic_batching.default_priority_level must be in [1, 2], got {level}" in _problems(text)


def test_priority_queue_policy_level_out_of_range() -> None:
    text = GOOD + (
        "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
        "priority_queue_policy { key: 5 value: { max_queue_size: 1 } } }"
    )
    assert "priority_queue_policy level 5 is out of range" in _problems(text)


def test_instance_group_count_negative() -> None:
    assert "count must be >= 1, got -1" in _problems(
        GOOD + 'instance_group [ { name: "g" count: -1 kind: KIND_CPU } ]'
    )


def test_cpu_group_listing_gpus() -> None:
    message = _problems(GOOD + 'instance_group [ { name: "g" kind: KIND_CPU gpus: [ 0 ] } ]')
    assert "instance_group 'g': KIND_CPU must not list gpus" in message


def test_every_problem_is_reported_at_once() -> None:
    message = _problems(
        GOOD.replace("max_batch_size: 8", "max_batch_size: 2")
        + 'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 0 ] } ]'
        + "dynamic_batching { preferred_batch_size: [ 3 ] }"
    )
    assert message.count(";") >= 2
    assert "duplicate input name" in message
    assert "dims must be -1 or >= 1" in message
    assert "preferred_batch_size 3" in message
