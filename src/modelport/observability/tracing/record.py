"""The per-request trace record: a sampled request's timestamps from the injected clock, and its
hand-off to a trace sink when the request finishes."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from modelport.clock import Clock
from modelport.errors import ModelportError

log = logging.getLogger(__name__)


class _Timing(Protocol):
    input_ns: int
    infer_ns: int
    output_ns: int


class TraceSink(Protocol):
    """Where finished traces go (a Triton trace file, or OpenTelemetry spans)."""

    def export(self, trace: RequestTrace) -> None: ...

    def close(self) -> None: ...


class WallClock:
    """The system's wall clock (epoch nanoseconds): it places a trace's monotonic readings in time."""

    def now_ns(self) -> int:
        return time.time_ns()


class RequestTrace:
    """Monotonic timestamps of one sampled request; the core and the batcher fill it in.

    `clock` must be the one the batcher reads, since `computed` takes the batcher's readings.
    """

    __slots__ = (
        "_clock",
        "_sink",
        "compute_end_ns",
        "compute_input_end_ns",
        "compute_output_start_ns",
        "compute_start_ns",
        "end_ns",
        "epoch_offset_ns",
        "error",
        "model",
        "queue_start_ns",
        "request_id",
        "start_ns",
        "trace_id",
        "traceparent",
        "version",
    )

    def __init__(
        self,
        trace_id: int,
        model: str,
        version: str,
        request_id: str,
        traceparent: str | None,
        sink: TraceSink,
        clock: Clock,
        wall_clock: Clock,
    ) -> None:
        self.trace_id = trace_id
        self.model = model
        self.version = version
        self.request_id = request_id
        self.traceparent = traceparent
        self._sink = sink
        self._clock = clock
        self.start_ns = clock.now_ns()
        self.epoch_offset_ns = wall_clock.now_ns() - self.start_ns
        self.queue_start_ns = 0
        self.compute_start_ns = 0
        self.compute_input_end_ns = 0
        self.compute_output_start_ns = 0
        self.compute_end_ns = 0
        self.end_ns = 0
        self.error: str | None = None

    def queued(self) -> None:
        self.queue_start_ns = self._clock.now_ns()

    def computed(self, start_ns: int, end_ns: int, timing: _Timing) -> None:
        """The batch this request was part of ran from start_ns to end_ns (monotonic clock)."""
        self.compute_start_ns = start_ns
        self.compute_end_ns = end_ns
        self.compute_input_end_ns = min(start_ns + timing.input_ns, end_ns)
        self.compute_output_start_ns = max(end_ns - timing.output_ns, self.compute_input_end_ns)

    def finish(self, error: BaseException | None = None) -> None:
        self.end_ns = self._clock.now_ns()
        if error is not None:
            is_ours = isinstance(error, ModelportError)
            self.error = error.message if is_ours else f"{type(error).__name__}: {error}"  # type: ignore[attr-defined]
        try:
            self._sink.export(self)
        except Exception:  # a broken exporter must never fail the request
            log.exception("failed to export the trace of request '%s'", self.request_id)

    def epoch(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.epoch_offset_ns

    def timestamps(self) -> list[tuple[str, int]]:
        """Triton's timestamp names with epoch nanoseconds, for the ones that were recorded."""
        points = (
            ("REQUEST_START", self.start_ns),
            ("QUEUE_START", self.queue_start_ns),
            ("COMPUTE_START", self.compute_start_ns),
            ("COMPUTE_INPUT_END", self.compute_input_end_ns),
            ("COMPUTE_OUTPUT_START", self.compute_output_start_ns),
            ("COMPUTE_END", self.compute_end_ns),
            ("REQUEST_END", self.end_ns),
        )
        return [(name, self.epoch(ns)) for name, ns in points if ns]
