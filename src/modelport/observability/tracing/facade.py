"""The server's tracing facade: trace settings, per-model sampling, and the sink's lifecycle
(start/stop); `begin` hands out a RequestTrace for each sampled request."""

from __future__ import annotations

import itertools
from typing import Any

from modelport.clock import Clock, MonotonicClock
from modelport.config.settings import TraceConfig
from modelport.observability.tracing.file_sink import TritonFileSink
from modelport.observability.tracing.record import RequestTrace, TraceSink, WallClock
from modelport.observability.tracing.settings import TraceSetting, TraceSettings


class Tracing:
    """Trace settings plus sampling; `begin` hands out a RequestTrace for sampled requests.

    `clock` stamps the traces and must be the clock the batchers read (both default to the process's
    monotonic clock); `wall_clock` places those readings on the epoch for export.
    """

    def __init__(
        self,
        config: TraceConfig | None = None,
        otel_exporter: Any = None,
        *,
        clock: Clock | None = None,
        wall_clock: Clock | None = None,
    ) -> None:
        self._config = config or TraceConfig()
        self.settings = TraceSettings(TraceSetting.from_config(self._config))
        self._otel_exporter = otel_exporter
        self._clock = clock or MonotonicClock()
        self._wall_clock = wall_clock or WallClock()
        self._sink: TraceSink | None = None
        self._seen: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.active = self.settings.any_enabled()

    @property
    def mode(self) -> str:
        return self._config.mode

    def start(self) -> None:
        """Create the exporter now when tracing is on at startup, so a missing dependency fails early."""
        if self.active:
            self._ensure_sink()

    def _ensure_sink(self) -> TraceSink:
        if self._sink is None:
            if self._config.mode == "opentelemetry":
                # optional dependency: only this mode loads the OpenTelemetry sink
                from modelport.observability.tracing.otel_sink import OpenTelemetrySink

                self._sink = OpenTelemetrySink(self._config, self._otel_exporter)
            else:
                self._sink = TritonFileSink(self.settings)
        return self._sink

    def stop(self) -> None:
        """Flush and close the exporter (blocking: call it from a thread)."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def setting_json(self, model: str = "") -> dict[str, Any]:
        return self.settings.get(model).to_json()

    def update(self, model: str, changes: dict[str, Any]) -> dict[str, Any]:
        setting = self.settings.update(model, changes)
        self._seen.pop(model, None)
        if not model:
            self._seen.clear()
        self.active = self.settings.any_enabled()
        if self.active:
            self._ensure_sink()
        return setting.to_json()

    def begin(
        self, model: str, version: str, request_id: str, traceparent: str | None
    ) -> RequestTrace | None:
        """A trace for this request if its model's setting samples it (every trace_rate-th request)."""
        setting = self.settings.get(model)
        if not setting.enabled:
            return None
        seen = self._seen.get(model, 0)
        self._seen[model] = seen + 1
        if seen % setting.rate:
            return None
        self.settings.consume(model)
        self.active = self.settings.any_enabled()
        sink = self._ensure_sink()
        return RequestTrace(
            next(self._ids), model, version, request_id, traceparent, sink, self._clock, self._wall_clock
        )
