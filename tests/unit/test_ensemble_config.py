"""Ensemble config checks: the structure of the steps, and the maps against the composing models."""

from __future__ import annotations

import pytest

from modelport.config.completion import apply_defaults
from modelport.config.ensemble import composing_problems, cycle_message, find_ensemble_cycle, inherited_labels
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import ModelSpec, build_spec
from modelport.config.validation import validate
from modelport.errors import InvalidInput
from modelport.testing.fakes import spec_from_pbtxt

SOURCE = "/repo/ens/config.pbtxt"
IO = """
name: "ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str], version: int = -1) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'{{ model_name: "{model}" model_version: {version} {ins} {outs} }}'


def _ensemble(*steps: str, io: str = IO) -> str:
    return io + "ensemble_scheduling { step [ " + ", ".join(steps) + " ] }"


def _problems(text: str) -> str:
    config = parse_pbtxt(text, SOURCE)
    apply_defaults(config, gpu_count=0)
    with pytest.raises(InvalidInput) as info:
        validate(config, SOURCE)
    return info.value.message


def _spec(text: str) -> ModelSpec:
    config = parse_pbtxt(text, SOURCE)
    apply_defaults(config, gpu_count=0)
    validate(config, SOURCE)
    return build_spec(config)


CHAIN = _ensemble(
    _step("a", {"X": "IN"}, {"Y": "mid"}),
    _step("b", {"X": "mid"}, {"Y": "OUT"}),
)


def test_a_chain_is_valid_and_becomes_steps() -> None:
    spec = _spec(CHAIN)
    assert spec.ensemble is not None
    assert [s.model_name for s in spec.ensemble.steps] == ["a", "b"]
    assert spec.ensemble.steps[1].input_map == (("X", "mid"),)
    assert spec.ensemble.steps[0].label == "step 0 (model 'a')"
    assert spec.ensemble.model_names == ("a", "b")
    assert spec.metadata_platform == "ensemble"
    assert spec.instance_groups == ()  # ensembles get no instance group


def test_no_steps() -> None:
    assert "ensemble_scheduling must have at least one step" in _problems(IO)


def test_a_cycle_between_steps_is_named() -> None:
    message = _problems(
        _ensemble(
            _step("a", {"X": "IN", "Z": "back"}, {"Y": "fwd"}),
            _step("b", {"X": "fwd"}, {"Y": "back", "W": "OUT"}),
        )
    )
    assert "the steps form a cycle: step 0 (model 'a') -> step 1 (model 'b') -> step 0 (model 'a')" in message


def test_an_unmapped_tensor_names_the_step_and_the_tensor() -> None:
    message = _problems(_ensemble(_step("a", {"X": "IN", "Z": "nowhere"}, {"Y": "OUT"})))
    assert (
        "step 0 (model 'a'): input 'Z' is mapped to ensemble tensor 'nowhere', which is neither an "
        "ensemble input nor an output of any step"
    ) in message


def test_an_output_nothing_produces() -> None:
    message = _problems(_ensemble(_step("a", {"X": "IN"}, {"Y": "other"})))
    assert "ensemble output 'OUT' is not produced by any step" in message
    assert "step 0 (model 'a'): output 'Y' is mapped to ensemble tensor 'other', which no step" in message


def test_an_unused_input_and_a_tensor_with_two_producers() -> None:
    io = IO.replace(
        'input [ { name: "IN"', 'input [ { name: "SPARE" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "IN"'
    )
    message = _problems(
        _ensemble(
            _step("a", {"X": "IN"}, {"Y": "OUT"}),
            _step("b", {"X": "IN"}, {"Y": "OUT"}),
            io=io,
        )
    )
    assert "ensemble input 'SPARE' is not used by any step" in message
    assert "step 1 (model 'b'): ensemble tensor 'OUT' is already produced by step 0 (model 'a')" in message


def test_a_step_writing_an_ensemble_input() -> None:
    message = _problems(_ensemble(_step("a", {"X": "IN"}, {"Y": "IN", "W": "OUT"})))
    assert (
        "step 0 (model 'a'): output 'Y' is mapped to ensemble tensor 'IN', which is an ensemble input"
        in message
    )


def test_missing_step_fields() -> None:
    message = _problems(_ensemble('{ model_name: "" output_map { key: "Y" value: "OUT" } }'))
    assert "step 0: model_name must be specified" in message
    assert "step 0 (model ''): input_map must map at least one input" in message


def test_instance_group_is_not_allowed_on_an_ensemble() -> None:
    message = _problems(CHAIN + "\ninstance_group [ { count: 1 kind: KIND_CPU } ]")
    assert "instance_group must not be specified for an ensemble" in message


def test_ensemble_io_is_checked_like_any_model() -> None:
    message = _problems(CHAIN.replace("dims: [ 4 ] } ]\noutput", "} ]\noutput", 1))
    assert "input 'IN': dims must be specified" in message


def test_ensemble_scheduling_needs_the_ensemble_platform() -> None:
    text = CHAIN.replace('platform: "ensemble"', 'backend: "onnxruntime"')
    assert 'ensemble_scheduling needs platform "ensemble"' in _problems(text)


def test_cycles_between_ensembles() -> None:
    graph = {"e1": ["m", "e2"], "e2": ["e3"], "e3": ["e1"], "m": []}
    cycle = find_ensemble_cycle("e1", lambda name: graph.get(name, []))
    assert cycle == ["e1", "e2", "e3", "e1"]
    assert cycle_message(cycle) == "circular dependency between ensembles: e1 -> e2 -> e3 -> e1"
    assert find_ensemble_cycle("e1", lambda name: {"e1": ["m", "m2"], "m2": ["m"]}.get(name, [])) is None
    assert find_ensemble_cycle("e1", lambda name: {"e1": ["e1"]}.get(name, [])) == ["e1", "e1"]


# --- against the composing models ---------------------------------------------------------------
def _model(
    name: str, in_type: str = "TYPE_FP32", dims: str = "4", batch: int = 8, extra: str = ""
) -> ModelSpec:
    return spec_from_pbtxt(
        f"""
        name: "{name}"
        max_batch_size: {batch}
        input [ {{ name: "X" data_type: {in_type} dims: [ {dims} ] }} ]
        output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
        {extra}
        """,
        name,
    )


def test_matching_composing_models_pass() -> None:
    assert composing_problems(_spec(CHAIN), [_model("a"), _model("b", dims="-1")]) == []


def test_a_composing_input_left_unmapped() -> None:
    b = spec_from_pbtxt(
        """
        name: "b" max_batch_size: 8
        input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] },
                { name: "K" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
        """,
        "b",
    )
    problems = composing_problems(_spec(CHAIN), [_model("a"), b])
    assert problems == ["step 1 (model 'b'): input 'K' is not mapped to any ensemble tensor"]


def test_maps_naming_tensors_the_model_does_not_have() -> None:
    text = _ensemble(_step("a", {"NOPE": "IN"}, {"Y": "mid"}), _step("b", {"X": "mid"}, {"GONE": "OUT"}))
    problems = composing_problems(_spec(text), [_model("a"), _model("b")])
    assert any(
        "step 0 (model 'a'): ensemble tensor 'IN' is mapped to input 'NOPE', which model 'a' does not have"
        in p
        for p in problems
    )
    assert "step 0 (model 'a'): input 'X' is not mapped to any ensemble tensor" in problems
    assert any(
        "ensemble tensor 'OUT' is mapped from output 'GONE', which model 'b' does not have" in p
        for p in problems
    )


def test_inconsistent_datatype_and_shape() -> None:
    problems = composing_problems(_spec(CHAIN), [_model("a", in_type="TYPE_INT32"), _model("b", dims="5")])
    assert (
        "ensemble tensor 'IN': inconsistent data type: FP32 in ensemble 'ens' but INT32 in step 0 (model 'a')"
        in problems
    )
    assert (
        "ensemble tensor 'mid': inconsistent shape: [-1,4] in step 0 (model 'a') "
        "but [-1,5] in step 1 (model 'b')" in problems
    )


def test_a_non_batching_model_may_take_the_full_shape() -> None:
    # [-1, 4] in a non-batching model agrees with [4] in a batching one (Triton's rule).
    assert composing_problems(_spec(CHAIN), [_model("a"), _model("b", dims="-1, 4", batch=0)]) == []


def test_composing_batch_limits_and_decoupled_models() -> None:
    problems = composing_problems(
        _spec(CHAIN),
        [_model("a", batch=2), _model("b", extra="model_transaction_policy { decoupled: true }")],
    )
    assert (
        "step 0 (model 'a'): the ensemble allows batches of up to 4, but model 'a' only up to 2" in problems
    )
    assert "step 1 (model 'b'): decoupled models cannot be ensemble steps in this server" in problems


def test_outputs_inherit_the_labels_of_the_model_output_they_come_from() -> None:
    labels = inherited_labels(_spec(CHAIN), {}, [{"Y": ["x"]}, {"Y": ["cat", "dog"]}])
    assert labels == {"OUT": ["cat", "dog"]}
    assert inherited_labels(_spec(CHAIN), {"OUT": ["own"]}, [{}, {"Y": ["cat"]}]) == {"OUT": ["own"]}
