"""config.pbtxt parsing and the JSON form /config shows."""

from __future__ import annotations

import pytest

from modelport.config.model_config import parse_json, parse_pbtxt, to_json_dict
from modelport.errors import ErrorCode, InvalidInput
from modelport.protocol import ModelConfigProto

ADD_SUB = """
name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, 16 ] } ]
version_policy: { specific: { versions: [ 1, 3 ] } }
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_priority_level: 1
  priority_queue_policy { key: 1 value: { default_timeout_microseconds: 5000 max_queue_size: 3 } }
}
"""


def test_parse_pbtxt_reads_fields() -> None:
    config = parse_pbtxt(ADD_SUB, "/models/add_sub/config.pbtxt")
    assert config.name == "add_sub"
    assert config.max_batch_size == 8
    assert [i.name for i in config.input] == ["INPUT0"]
    assert list(config.output[0].dims) == [-1, 16]
    assert list(config.version_policy.specific.versions) == [1, 3]


def test_parse_pbtxt_error_names_the_file_and_position() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_pbtxt('name: "m"\nmax_batch_size: "eight"\n', "/repo/m/config.pbtxt")
    assert info.value.code is ErrorCode.INVALID_ARG
    assert "/repo/m/config.pbtxt" in info.value.message
    assert "failed to parse model configuration" in info.value.message
    assert "2:" in info.value.message  # text_format reports line:column


def test_parse_pbtxt_unknown_field_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="no_such_field"):
        parse_pbtxt("no_such_field: 1", "cfg.pbtxt")


def test_parse_pbtxt_unknown_enum_value_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="TYPE_FP33"):
        parse_pbtxt('input [ { name: "x" data_type: TYPE_FP33 dims: [1] } ]', "cfg.pbtxt")


def test_parse_json_override() -> None:
    config = parse_json(
        '{"name": "m", "max_batch_size": 2, "input": [{"name": "x", "data_type": "TYPE_INT8", "dims": [3]}]}',
        "override",
    )
    assert config.max_batch_size == 2
    assert list(config.input[0].dims) == [3]


def test_parse_json_error() -> None:
    with pytest.raises(InvalidInput, match="failed to parse model configuration"):
        parse_json('{"max_batch_size": "x"}', "override")


class TestToJsonDict:
    def test_int64_fields_are_numbers(self) -> None:
        doc = to_json_dict(parse_pbtxt(ADD_SUB, "cfg"))
        assert doc["input"][0]["dims"] == [16]
        assert doc["output"][0]["dims"] == [-1, 16]
        assert doc["version_policy"] == {"specific": {"versions": [1, 3]}}
        batching = doc["dynamic_batching"]
        assert batching["max_queue_delay_microseconds"] == 100
        assert batching["priority_levels"] == 2
        assert batching["default_priority_level"] == 1
        assert batching["preferred_batch_size"] == [2, 4]

    def test_map_keys_stay_strings_and_nested_int64_are_numbers(self) -> None:
        policy = to_json_dict(parse_pbtxt(ADD_SUB, "cfg"))["dynamic_batching"]["priority_queue_policy"]
        assert list(policy) == ["1"]
        assert policy["1"]["default_timeout_microseconds"] == 5000
        assert policy["1"]["max_queue_size"] == 3
        assert policy["1"]["timeout_action"] == "REJECT"
        assert policy["1"]["allow_timeout_override"] is False

    def test_defaults_are_printed_with_proto_names(self) -> None:
        doc = to_json_dict(parse_pbtxt('name: "m"', "cfg"))
        assert doc["name"] == "m"
        assert doc["platform"] == ""
        assert doc["backend"] == ""
        assert doc["runtime"] == ""
        assert doc["max_batch_size"] == 0
        assert doc["input"] == []
        assert doc["output"] == []
        assert doc["batch_input"] == []
        assert doc["instance_group"] == []
        assert doc["default_model_filename"] == ""
        assert doc["cc_model_filenames"] == {}
        assert doc["metric_tags"] == {}
        assert doc["parameters"] == {}
        assert doc["model_warmup"] == []

    def test_unset_messages_and_oneofs_are_omitted(self) -> None:
        doc = to_json_dict(parse_pbtxt('name: "m"', "cfg"))
        for absent in (
            "dynamic_batching",
            "sequence_batching",
            "ensemble_scheduling",
            "model_transaction_policy",
            "response_cache",
            "version_policy",
        ):
            assert absent not in doc

    def test_tensor_defaults_and_enum_names(self) -> None:
        doc = to_json_dict(parse_pbtxt(ADD_SUB, "cfg"))
        assert doc["input"][0] == {
            "name": "INPUT0",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [16],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
            "is_non_linear_format_io": False,
        }
        assert doc["output"][0]["label_filename"] == ""

    def test_reshape_and_warmup_dims_are_numbers(self) -> None:
        config = parse_pbtxt(
            'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ 2, 3 ] } } ]\n'
            'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" '
            "value: { data_type: TYPE_FP32 dims: [ 7 ] zero_data: true } } } ]",
            "cfg",
        )
        doc = to_json_dict(config)
        assert doc["input"][0]["reshape"] == {"shape": [2, 3]}
        assert doc["model_warmup"][0]["inputs"]["x"]["dims"] == [7]

    def test_round_trip_through_json(self) -> None:
        import json

        original = parse_pbtxt(ADD_SUB, "cfg")
        again = parse_json(json.dumps(to_json_dict(original)), "round trip")
        assert again == original
        assert isinstance(again, ModelConfigProto)
