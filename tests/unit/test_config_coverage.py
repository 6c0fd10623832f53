"""The config coverage table: it names every field of Triton's ModelConfig, and `review` warns or refuses
each field set that modelport does not implement, once per field; README's table is rendered from it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor

from modelport.config.completion import apply_defaults
from modelport.config.coverage import Review, render_markdown, review
from modelport.config.coverage_table import TABLE, Coverage, Level
from modelport.config.model_config import parse_json, parse_pbtxt
from modelport.protocol import ModelConfigProto

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- config-coverage:start -->", "<!-- config-coverage:end -->"


def descriptor_paths(desc: Descriptor, prefix: str = "") -> Iterator[str]:
    """Every field path of the message tree; a map's message values continue under the map's path."""
    for field in desc.fields:
        path = prefix + field.name
        yield path
        child = field.message_type
        if child is not None and child.GetOptions().map_entry:
            child = child.fields_by_name["value"].message_type
        if child is not None:
            yield from descriptor_paths(child, path + ".")


def _covering_entry(path: str) -> str | None:
    """The entry deciding `path`: itself, or an ancestor that is not SUPPORTED (it covers its subtree)."""
    parts = path.split(".")
    for end in range(1, len(parts)):
        ancestor = ".".join(parts[:end])
        if ancestor in TABLE and TABLE[ancestor].level is not Level.SUPPORTED:
            return ancestor
    return path if path in TABLE else None


ALL_PATHS = list(descriptor_paths(ModelConfigProto.DESCRIPTOR))


def test_every_field_of_the_model_config_is_in_the_table() -> None:
    missing = [path for path in ALL_PATHS if _covering_entry(path) is None]
    assert not missing, f"add these ModelConfig fields to config/coverage_table.py: {missing}"


def test_the_table_names_only_real_fields_and_nothing_under_an_unsupported_block() -> None:
    assert not set(TABLE) - set(ALL_PATHS), "entries that are not ModelConfig fields"
    redundant = [path for path in TABLE if _covering_entry(path) != path]
    assert not redundant, f"already covered by an ignored or refused block above them: {redundant}"


def test_the_table_follows_proto_order() -> None:
    assert list(TABLE) == [p for p in ALL_PATHS if p in TABLE]


def _completed(text: str) -> ModelConfigProto:
    config = parse_pbtxt(text, "m/config.pbtxt")
    config.name = config.name or "m"
    apply_defaults(config, gpu_count=0)
    return config


PLAIN = """
name: "m" backend: "onnxruntime" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 4, 4 ] reshape { shape: [ 48 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100 priority_levels: 2
  default_priority_level: 1 default_queue_policy { timeout_action: DELAY max_queue_size: 4 }
  priority_queue_policy { key: 2 value { default_timeout_microseconds: 9 } } }
instance_group [ { count: 2 kind: KIND_CPU
  rate_limiter { resources [ { name: "r" count: 1 } ] priority: 2 } } ]
version_policy { specific { versions: [ 1 ] } }
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
optimization { graph { level: 1 } }
model_warmup [ { name: "w" batch_size: 1
  inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 48 ] zero_data: true } } } ]
model_transaction_policy { decoupled: false }
response_cache { enable: true }
"""


def test_a_config_of_supported_fields_gives_no_warning_once_completed() -> None:
    assert review(_completed(PLAIN), "m") == Review()


# GET /v2/models/b/config of tritonserver 2.51 (the peer) for a Python model: Triton's completed config.
TRITON_2_51_CONFIG = (
    '{"name": "b", "platform": "", "backend": "python", "runtime": "", '
    '"version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 8, '
    '"input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", '
    '"dims": [4], "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false, '
    '"is_non_linear_format_io": false}], "output": [{"name": "OUTPUT0", '
    '"data_type": "TYPE_FP32", "dims": [4], "label_filename": "", "is_shape_tensor": false, '
    '"is_non_linear_format_io": false}], "batch_input": [], "batch_output": [], '
    '"optimization": {"priority": "PRIORITY_DEFAULT", "input_pinned_memory": {"enable": true}, '
    '"output_pinned_memory": {"enable": true}, "gather_kernel_buffer_threshold": 0, '
    '"eager_batching": false}, "instance_group": [{"name": "b", "kind": "KIND_CPU", '
    '"count": 1, "gpus": [], "secondary_devices": [], "profile": [], "passive": false, '
    '"host_policy": ""}], "default_model_filename": "model.py", "cc_model_filenames": {}, '
    '"metric_tags": {}, "parameters": {}, "model_warmup": []}'
)


def test_a_config_as_triton_completes_it_gives_no_warning() -> None:
    assert review(parse_json(TRITON_2_51_CONFIG, "b"), "b") == Review()


def test_supported_sequence_batching_gives_no_warning() -> None:
    text = """name: "s" max_batch_size: 4 sequence_batching { max_sequence_idle_microseconds: 5
      oldest { max_candidate_sequences: 2 }
      control_input [ { name: "START"
        control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
      state [ { input_name: "i" output_name: "o" data_type: TYPE_FP32 dims: [ 1 ]
                initial_state [ { name: "z" data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } ] } ] }"""
    assert review(_completed(text), "s").warnings == ()


def test_an_ignored_field_is_one_warning_naming_the_model_and_the_full_path() -> None:
    config = _completed(
        PLAIN.replace("optimization { graph { level: 1 } }", "")
        + "optimization { graph { level: 1 } cuda { graphs: true busy_wait_events: true } }"
    )
    assert review(config, "m").warnings == (
        "model 'm': config field 'optimization.cuda.graphs' is not supported by modelport and is ignored",
        "model 'm': config field 'optimization.cuda.busy_wait_events' is not supported by modelport and is "
        "ignored",
    )


def test_a_field_set_in_many_entries_warns_once() -> None:
    config = _completed(
        'name: "m" instance_group [ { count: 1 kind: KIND_CPU host_policy: "a" profile: [ "0" ] },'
        ' { count: 1 kind: KIND_CPU host_policy: "b" } ]'
    )
    assert review(config, "m").warnings == (
        "model 'm': config field 'instance_group.profile' is not supported by modelport and is ignored",
        "model 'm': config field 'instance_group.host_policy' is not supported by modelport and is ignored",
    )


def test_execution_accelerators_pass_the_review() -> None:
    # the onnxruntime backend reads them when an instance loads (tests/unit/test_onnx_providers.py)
    config = _completed(
        'name: "m" optimization { execution_accelerators {'
        ' gpu_execution_accelerator [ { name: "tensorrt"'
        ' parameters { key: "precision_mode" value: "FP16" } },'
        ' { name: "cuda" } ] cpu_execution_accelerator [ { name: "openvino" } ] } }'
    )
    assert review(config, "m").warnings == ()


def test_partly_supported_field_says_what_part_is_ignored() -> None:
    # No field is partly supported today: the mechanism is checked on a table that says one is.
    field = "sequence_batching.direct.minimum_slot_utilization"
    table = {**TABLE, field: Coverage(Level.PARTLY, "an example of what would be ignored")}
    config = _completed('name: "m" sequence_batching { direct { minimum_slot_utilization: 0.5 } }')
    (warning,) = review(config, "m", table).warnings
    assert warning.startswith(
        "model 'm': config field 'sequence_batching.direct.minimum_slot_utilization' is only partly "
        "supported by modelport: "
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" data_type: TYPE_FP32'
            ' source_input: "x" } ]',
            "'batch_input' (target 'N')",
        ),
        (
            'batch_output [ { target_name: "y" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "x" } ]',
            "'batch_output' (target 'y')",
        ),
        (
            'model_repository_agents { agents [ { name: "checksum" } ] }',
            "'model_repository_agents' (agent 'checksum')",
        ),
        ("sequence_batching { iterative_sequence: true }", "'sequence_batching.iterative_sequence'"),
    ],
)
def test_fields_that_would_give_wrong_answers_are_refused(text: str, field: str) -> None:
    found = review(_completed('name: "m" max_batch_size: 4 ' + text), "m")
    assert found.warnings == ()
    (refusal,) = found.refusals
    assert refusal.startswith(f"config field {field} is not supported by modelport: ")


def test_a_field_missing_from_the_table_warns_rather_than_pass_silently() -> None:
    table = {path: coverage for path, coverage in TABLE.items() if path != "metric_tags"}
    config = _completed('name: "m" metric_tags { key: "team" value: "a" }')
    assert review(config, "m", table).warnings == (
        "model 'm': config field 'metric_tags' is not supported by modelport and is ignored",
    )


def test_a_json_override_is_reviewed_alike() -> None:
    config = parse_json('{"name": "m", "optimization": {"eager_batching": true}}', "override")
    assert review(config, "m").warnings == (
        "model 'm': config field 'optimization.eager_batching' is not supported by modelport and is ignored",
    )


def test_the_readme_table_is_rendered_from_the_coverage_table() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    assert match, f"README.md needs the config coverage table between {START} and {END}"
    assert match.group(1) == render_markdown(), "run scripts/render_config_coverage.py to update README.md"


def test_rendering_groups_alike_siblings_and_lists_supported_blocks() -> None:
    table = {
        "a": Coverage(Level.SUPPORTED),
        "a.x": Coverage(Level.SUPPORTED, "x note"),
        "a.y": Coverage(Level.IGNORED, "gpu"),
        "a.z": Coverage(Level.IGNORED, "gpu"),
        "b": Coverage(Level.REFUSED, "wrong answers"),
    }
    assert render_markdown(table).splitlines()[2:] == [
        "| `a` | supported | fields `x`; `x`: x note |",
        "| `a.y`, `a.z` | ignored (warning at load) | gpu |",
        "| `b` | refused (model UNAVAILABLE) | wrong answers |",
    ]
