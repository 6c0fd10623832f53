"""What `modelport tune` makes of its trials: configs with the knobs, tuned.pbtxt, the table, the plot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelport.config.model_config import parse_pbtxt
from modelport.errors import InvalidInput
from modelport.tune.configs import (
    ensemble_batch_floor,
    model_folder,
    read_base,
    tuned_path,
    with_knobs,
    write_tuned,
)
from modelport.tune.plot import render_svg
from modelport.tune.report import knob_legend, trial_rows, verdict
from modelport.tune.search import Knobs, Level, Trial

CONFIG = """name: "m"
backend: "onnxruntime"
max_batch_size: 8
instance_group [ { count: 3 kind: KIND_CPU }, { count: 1 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "7" } }
"""


def model(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(CONFIG)
    return folder


def test_knobs_replace_the_layout_threads_and_batching(tmp_path: Path) -> None:
    base = read_base(model(tmp_path))
    config = with_knobs(base, Knobs(2, 4, 16, (8, 16), 500), thread_knob=True)
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, base.instance_group[0].KIND_CPU)]
    assert config.parameters["intra_op_thread_count"].string_value == "4"
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    default_threads = with_knobs(base, Knobs(1, 0, 8), thread_knob=True)
    assert "intra_op_thread_count" not in default_threads.parameters  # t- : the server's default
    assert base.instance_group[0].count == 3  # the base is not changed


def test_tuned_config_goes_to_configs_and_never_over_config_pbtxt(tmp_path: Path) -> None:
    folder = model(tmp_path)
    config = with_knobs(read_base(folder), Knobs(2, 1, 4, (4,), 0), thread_knob=True)
    path = write_tuned(folder, config, "chosen by a test\nsecond line")
    assert path == folder / "configs" / "tuned.pbtxt"
    assert (folder / "config.pbtxt").read_text() == CONFIG
    text = path.read_text()
    assert text.startswith("# chosen by a test\n# second line\n")
    assert parse_pbtxt(text, "tuned.pbtxt").instance_group[0].count == 2


def test_writing_through_a_link_out_of_the_model_folder_is_refused(tmp_path: Path) -> None:
    folder = model(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "configs").symlink_to(elsewhere)
    with pytest.raises(InvalidInput, match="outside the model folder"):
        tuned_path(folder)
    for name in ("..", "../m", "a/b", ""):
        with pytest.raises(InvalidInput):
            model_folder(tmp_path / "repo", name)
    with pytest.raises(InvalidInput, match="no folder"):
        model_folder(tmp_path / "repo", "absent")


def trials() -> list[Trial]:
    return [
        Trial(Knobs(1, 0, 8, (8,), 0), (Level(1, 100, 1, 2), Level(4, 300, 3, 6))),
        Trial(Knobs(2, 1, 8, (8,), 0), (Level(1, 120, 1, 2), Level(4, 500, 3, 30))),
        Trial(Knobs(4, 1, 8, (8,), 0), error="instance 3 failed to load"),
    ]


def test_table_rows_and_verdict_name_the_chosen_configuration() -> None:
    measured = trials()
    headers, rows = trial_rows(measured, (1, 4), measured[0])
    assert headers[2:] == ["c=1: infer/s p50/p99 ms", "c=4: infer/s p50/p99 ms"]
    assert rows[0][:3] == ["1*", "i1 t- b8 p8 d0", "100  1.00/2.00"]
    assert rows[2][2].startswith("failed: instance 3")
    assert "300 infer/s at concurrency 4" in verdict(measured, measured[0], 10.0)
    assert "no configuration meets the latency budget of 1 ms" in verdict(measured, None, 1.0)


def test_the_legend_and_verdict_say_how_latencies_were_measured() -> None:
    measured = trials()
    within = "(within the p99 budget of 10 ms; measured in-process)"
    assert verdict(measured, measured[0], 10.0).endswith(within)
    assert verdict(measured, measured[0], None, "grpc").endswith("given; measured over gRPC)")
    assert knob_legend("in-process").endswith("latencies measured in-process (no network, no codec)")
    assert "latencies measured over HTTP on 127.0.0.1" in knob_legend("http")


def test_plot_has_one_point_per_measured_trial_and_marks_the_chosen_one() -> None:
    measured = trials()
    svg = render_svg(measured, measured[0], 10.0, "t")
    assert len(re.findall(r'<circle class="trial', svg)) == 2
    assert len(re.findall(r'<circle class="trial chosen"', svg)) == 1
    assert 'class="budget"' in svg and "chosen: i1 t- b8 p8 d0" in svg


def test_the_batch_floor_is_the_largest_ensemble_that_steps_through_the_model(tmp_path: Path) -> None:
    repo = model(tmp_path).parent
    for name, batch, step in (("small", 2, "m"), ("big", 6, "m"), ("other", 32, "x")):
        (repo / name).mkdir()
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {batch}\n'
            f'ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1 }} ] }}\n'
        )
    (repo / "broken").mkdir()
    (repo / "broken" / "config.pbtxt").write_text("not a config {")
    assert ensemble_batch_floor(repo, "m") == 6
    assert ensemble_batch_floor(repo, "nobody") == 0
