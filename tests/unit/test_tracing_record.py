"""A trace's timestamps come from the injected clock: checked exactly with FakeClock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelport.clock import FakeClock
from modelport.config.settings import TraceConfig
from modelport.errors import InvalidInput
from modelport.observability.tracing import RequestTrace, Tracing

EPOCH_NS = 1_700_000_000_000_000_000
START_NS = 5_000


@dataclass
class Timing:
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


class ListSink:
    """An in-memory trace sink."""

    def __init__(self) -> None:
        self.traces: list[RequestTrace] = []
        self.closed = False

    def export(self, trace: RequestTrace) -> None:
        self.traces.append(trace)

    def close(self) -> None:
        self.closed = True


class BrokenSink(ListSink):
    def export(self, trace: RequestTrace) -> None:
        raise OSError("disk full")


def clocks() -> tuple[FakeClock, FakeClock]:
    return FakeClock(START_NS), FakeClock(EPOCH_NS)


def record(clock: FakeClock, wall: FakeClock, sink: ListSink) -> RequestTrace:
    return RequestTrace(7, "m", "1", "req-1", None, sink, clock, wall)


def test_timestamps_are_clock_readings_placed_on_the_epoch() -> None:
    clock, wall = clocks()
    sink = ListSink()
    trace = record(clock, wall, sink)
    clock.advance(100)
    trace.queued()
    clock.advance(1_000)
    compute_start = clock.now_ns()
    clock.advance(500)
    trace.computed(compute_start, clock.now_ns(), Timing(input_ns=50, infer_ns=400, output_ns=30))
    clock.advance(20)
    trace.finish()

    assert sink.traces == [trace]
    offset = EPOCH_NS - START_NS
    assert trace.timestamps() == [
        ("REQUEST_START", START_NS + offset),
        ("QUEUE_START", START_NS + 100 + offset),
        ("COMPUTE_START", START_NS + 1_100 + offset),
        ("COMPUTE_INPUT_END", START_NS + 1_150 + offset),
        ("COMPUTE_OUTPUT_START", START_NS + 1_570 + offset),
        ("COMPUTE_END", START_NS + 1_600 + offset),
        ("REQUEST_END", START_NS + 1_620 + offset),
    ]
    assert trace.error is None


def test_compute_phases_stay_inside_the_batch() -> None:
    clock, wall = clocks()
    trace = record(clock, wall, ListSink())
    trace.computed(100, 200, Timing(input_ns=500, output_ns=500))
    assert (trace.compute_input_end_ns, trace.compute_output_start_ns) == (200, 200)


def test_unrecorded_points_are_left_out() -> None:
    clock, wall = clocks()
    trace = record(clock, wall, ListSink())
    clock.advance(10)
    trace.finish()
    assert trace.timestamps() == [("REQUEST_START", EPOCH_NS), ("REQUEST_END", EPOCH_NS + 10)]


def test_finish_records_the_error_and_survives_a_broken_sink() -> None:
    clock, wall = clocks()
    trace = record(clock, wall, BrokenSink())
    trace.finish(InvalidInput("bad shape"))
    assert trace.error == "bad shape"
    other = record(clock, wall, ListSink())
    other.finish(RuntimeError("boom"))
    assert other.error == "RuntimeError: boom"


def test_tracing_stamps_traces_with_its_clock(tmp_path: Path) -> None:
    clock, wall = clocks()
    trace_file = tmp_path / "trace.jsonl"
    config = TraceConfig(level=("TIMESTAMPS",), rate=2, file=str(trace_file))
    tracing = Tracing(config, clock=clock, wall_clock=wall)
    tracing.start()
    first = tracing.begin("m", "1", "a", "00-tp")
    assert first is not None
    assert tracing.begin("m", "1", "b", None) is None  # rate 2: every other request
    clock.advance(250)
    first.finish()
    tracing.stop()

    (line,) = trace_file.read_text().splitlines()
    doc = json.loads(line)
    assert doc == {
        "id": 1,
        "model_name": "m",
        "model_version": "1",
        "request_id": "a",
        "timestamps": [
            {"name": "REQUEST_START", "ns": EPOCH_NS},
            {"name": "REQUEST_END", "ns": EPOCH_NS + 250},
        ],
        "traceparent": "00-tp",
    }


def test_tracing_off_hands_out_no_traces() -> None:
    clock, wall = clocks()
    tracing = Tracing(TraceConfig(), clock=clock, wall_clock=wall)
    assert tracing.active is False
    assert tracing.begin("m", "1", "a", None) is None


@pytest.mark.parametrize("level", [["TIMESTAMPS"], "TIMESTAMPS"])
def test_update_turns_tracing_on(level: object, tmp_path: Path) -> None:
    tracing = Tracing(TraceConfig(file=str(tmp_path / "t.jsonl")), clock=FakeClock())
    assert tracing.update("m", {"trace_level": level, "trace_rate": "1"})["trace_level"] == ["TIMESTAMPS"]
    assert tracing.active
    trace = tracing.begin("m", "1", "a", None)
    assert trace is not None and trace.start_ns == 0
    tracing.stop()
