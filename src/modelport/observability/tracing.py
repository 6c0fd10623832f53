"""Request tracing: Triton's trace settings (global and per model), sampling, and trace export.

Off by default. While every trace level is OFF, `Tracing.active` is False and the only cost on the
request path is reading that attribute. A sampled request gets a `RequestTrace` that records
monotonic timestamps (request, queue, compute); when it ends, the trace goes to a sink:
  * trace_mode "opentelemetry": spans `InferRequest` > `queue`, `compute`, exported over OTLP/HTTP
    (optional dependency: `pip install modelport[tracing]`), child of the client's W3C traceparent;
  * trace_mode "triton": one JSON object per trace, appended to trace_file.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol, cast

import orjson

from modelport.config.settings import TraceConfig
from modelport.errors import InvalidInput, ModelportError

log = logging.getLogger(__name__)

TRACE_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
TRACE_MODES = ("triton", "opentelemetry")
SETTING_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file", "trace_mode")
DEFAULT_OTLP_URL = "http://localhost:4318/v1/traces"


class _Timing(Protocol):
    input_ns: int
    infer_ns: int
    output_ns: int


# --- settings --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSetting:
    """One effective trace setting (global, or a model's with the global values filled in)."""

    level: tuple[str, ...] = ("OFF",)
    rate: int = 1000
    count: int = -1
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"

    @property
    def enabled(self) -> bool:
        return any(level != "OFF" for level in self.level) and self.count != 0 and self.rate > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_level": list(self.level),
            "trace_rate": str(self.rate),
            "trace_count": str(self.count),
            "log_frequency": str(self.log_frequency),
            "trace_file": self.file,
            "trace_mode": self.mode,
        }

    @classmethod
    def from_config(cls, config: TraceConfig) -> TraceSetting:
        return cls(config.level, config.rate, config.count, config.log_frequency, config.file, config.mode)


_FIELD_OF_KEY = {
    "trace_level": "level",
    "trace_rate": "rate",
    "trace_count": "count",
    "log_frequency": "log_frequency",
    "trace_file": "file",
    "trace_mode": "mode",
}


def _parse_value(key: str, value: Any) -> Any:
    """A setting value from the API (strings, or a list for trace_level) as TraceSetting holds it."""
    if key == "trace_level":
        levels = [value] if isinstance(value, str) else value
        if not isinstance(levels, list) or not levels or not all(isinstance(v, str) for v in levels):
            raise InvalidInput("expected a list of strings for 'trace_level'")
        for level in levels:
            if level not in TRACE_LEVELS:
                raise InvalidInput(f"invalid 'trace_level' '{level}': expected OFF, TIMESTAMPS or TENSORS")
        return tuple(levels)
    if isinstance(value, list) and len(value) == 1:  # gRPC sends every value as a repeated string
        value = value[0]
    if key in ("trace_file", "trace_mode"):
        if not isinstance(value, str):
            raise InvalidInput(f"expected a string for '{key}'")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"expected an integer string for '{key}', got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"expected an integer string for '{key}', got {value!r}") from None
    lowest = -1 if key == "trace_count" else 0
    if number < lowest:
        raise InvalidInput(f"'{key}' must be at least {lowest}, got {number}")
    return number


def _check_settings(changes: dict[str, Any]) -> None:
    for key in changes:
        if key not in SETTING_KEYS:
            raise InvalidInput(f"unknown trace setting '{key}'; expected one of {', '.join(SETTING_KEYS)}")


class TraceSettings:
    """Global settings plus per-model overrides.

    A `null` value resets a setting: a model's to the global value, a global one to its startup value.
    """

    def __init__(self, startup: TraceSetting) -> None:
        self._startup = startup
        self._global = startup
        self._overrides: dict[str, dict[str, Any]] = {}
        self._effective: dict[str, TraceSetting] = {}

    def get(self, model: str = "") -> TraceSetting:
        if not model:
            return self._global
        setting = self._effective.get(model)
        if setting is None:
            overrides = self._overrides.get(model)
            setting = dataclasses.replace(self._global, **overrides) if overrides else self._global
            self._effective[model] = setting
        return setting

    def update(self, model: str, changes: dict[str, Any]) -> TraceSetting:
        _check_settings(changes)
        parsed = {key: None if value is None else _parse_value(key, value) for key, value in changes.items()}
        current = self.get(model)
        mode = parsed.get("trace_mode")
        if mode is not None and mode != current.mode:
            raise InvalidInput("'trace_mode' can only be chosen at startup (--trace-config mode=...)")
        if parsed.get("trace_file") and current.mode == "opentelemetry":
            raise InvalidInput("'trace_file' does not apply to trace_mode 'opentelemetry'")
        if parsed.get("log_frequency") and current.mode == "opentelemetry":
            raise InvalidInput("'log_frequency' does not apply to trace_mode 'opentelemetry'")
        if model:
            overrides = self._overrides.setdefault(model, {})
            for key, value in parsed.items():
                if value is None:
                    overrides.pop(_FIELD_OF_KEY[key], None)
                else:
                    overrides[_FIELD_OF_KEY[key]] = value
        else:
            values = {
                _FIELD_OF_KEY[key]: getattr(self._startup, _FIELD_OF_KEY[key]) if value is None else value
                for key, value in parsed.items()
            }
            self._global = dataclasses.replace(self._global, **values)
        self._effective.clear()
        return self.get(model)

    def consume(self, model: str) -> None:
        """One trace was taken under `model`'s setting: count it against trace_count."""
        setting = self.get(model)
        if setting.count <= 0:
            return
        overrides = self._overrides.get(model) if model else None
        if overrides is not None and "count" in overrides:
            overrides["count"] = setting.count - 1
        else:
            self._global = dataclasses.replace(self._global, count=self._global.count - 1)
        self._effective.clear()

    def any_enabled(self) -> bool:
        if self._global.enabled:
            return True
        return any(self.get(model).enabled for model in self._overrides)


# --- per-request records ---------------------------------------------------------------------------


class RequestTrace:
    """Monotonic timestamps of one sampled request; the core and the batcher fill it in."""

    __slots__ = (
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
    ) -> None:
        self.trace_id = trace_id
        self.model = model
        self.version = version
        self.request_id = request_id
        self.traceparent = traceparent
        self._sink = sink
        self.start_ns = time.monotonic_ns()
        self.epoch_offset_ns = time.time_ns() - self.start_ns
        self.queue_start_ns = 0
        self.compute_start_ns = 0
        self.compute_input_end_ns = 0
        self.compute_output_start_ns = 0
        self.compute_end_ns = 0
        self.end_ns = 0
        self.error: str | None = None

    def queued(self) -> None:
        self.queue_start_ns = time.monotonic_ns()

    def computed(self, start_ns: int, end_ns: int, timing: _Timing) -> None:
        """The batch this request was part of ran from start_ns to end_ns (monotonic clock)."""
        self.compute_start_ns = start_ns
        self.compute_end_ns = end_ns
        self.compute_input_end_ns = min(start_ns + timing.input_ns, end_ns)
        self.compute_output_start_ns = max(end_ns - timing.output_ns, self.compute_input_end_ns)

    def finish(self, error: BaseException | None = None) -> None:
        self.end_ns = time.monotonic_ns()
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


class TraceSink(Protocol):
    def export(self, trace: RequestTrace) -> None: ...

    def close(self) -> None: ...


class TritonFileSink:
    """trace_mode "triton": JSON lines of Triton's timestamps, appended to each trace's trace_file."""

    def __init__(self, settings: TraceSettings) -> None:
        self._settings = settings
        self._pending: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._warned = False

    def export(self, trace: RequestTrace) -> None:
        setting = self._settings.get(trace.model)
        if not setting.file:
            if not self._warned:
                log.warning("trace_mode 'triton' has no trace_file: traces are dropped (set trace_file)")
                self._warned = True
            return
        doc: dict[str, Any] = {
            "id": trace.trace_id,
            "model_name": trace.model,
            "model_version": trace.version,
            "request_id": trace.request_id,
            "timestamps": [{"name": name, "ns": ns} for name, ns in trace.timestamps()],
        }
        if trace.traceparent:
            doc["traceparent"] = trace.traceparent
        if trace.error:
            doc["error"] = trace.error
        with self._lock:
            lines = self._pending.setdefault(setting.file, [])
            lines.append(orjson.dumps(doc) + b"\n")
            if len(lines) >= max(setting.log_frequency, 1):
                self._write(setting.file)

    def _write(self, path: str) -> None:
        lines = self._pending.pop(path, [])
        if lines:
            with open(path, "ab") as handle:
                handle.write(b"".join(lines))

    def close(self) -> None:
        with self._lock:
            for path in list(self._pending):
                self._write(path)


class OpenTelemetrySink:
    """trace_mode "opentelemetry": spans InferRequest > queue, compute, through an OTel span processor."""

    def __init__(self, config: TraceConfig, exporter: Any = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ModelportError(
                "trace_mode 'opentelemetry' needs OpenTelemetry: pip install 'modelport[tracing]'"
            ) from None
        attributes = {"service.name": "modelport", **dict(config.otel_resource)}
        self._provider = TracerProvider(resource=Resource.create(attributes))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=_otlp_endpoint(config.otel_url))
            options: dict[str, Any] = dict(config.otel_bsp)
            self._provider.add_span_processor(BatchSpanProcessor(exporter, **options))
        else:  # tests hand in an in-memory exporter and want spans at once
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("modelport")
        self._propagator = TraceContextTextMapPropagator()

    def export(self, trace: RequestTrace) -> None:
        from opentelemetry import trace as otel
        from opentelemetry.trace import SpanKind, Status, StatusCode

        parent = self._propagator.extract({"traceparent": trace.traceparent}) if trace.traceparent else None
        root = self._tracer.start_span(
            "InferRequest",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=trace.epoch(trace.start_ns),
            attributes={
                "triton.model_name": trace.model,
                "triton.model_version": trace.version,
                "triton.request_id": trace.request_id,
                "triton.trace_id": trace.trace_id,
            },
        )
        inside = otel.set_span_in_context(root)
        if trace.queue_start_ns and trace.compute_start_ns:
            queue = self._tracer.start_span(
                "queue", context=inside, start_time=trace.epoch(trace.queue_start_ns)
            )
            queue.end(end_time=trace.epoch(trace.compute_start_ns))
        if trace.compute_start_ns:
            compute = self._tracer.start_span(
                "compute", context=inside, start_time=trace.epoch(trace.compute_start_ns)
            )
            compute.add_event("COMPUTE_INPUT_END", timestamp=trace.epoch(trace.compute_input_end_ns))
            compute.add_event("COMPUTE_OUTPUT_START", timestamp=trace.epoch(trace.compute_output_start_ns))
            compute.end(end_time=trace.epoch(trace.compute_end_ns))
        if trace.error:
            root.set_status(Status(StatusCode.ERROR, trace.error))
        root.end(end_time=trace.epoch(trace.end_ns))

    def close(self) -> None:
        self._provider.shutdown()


def _otlp_endpoint(url: str) -> str:
    """Triton's url setting may omit the scheme (`localhost:4318/v1/traces`)."""
    return url if "://" in url else f"http://{url}"


# --- the server's tracing facade ---------------------------------------------------------------------


class Tracing:
    """Trace settings plus sampling; `begin` hands out a RequestTrace for sampled requests."""

    def __init__(self, config: TraceConfig | None = None, otel_exporter: Any = None) -> None:
        self._config = config or TraceConfig()
        self.settings = TraceSettings(TraceSetting.from_config(self._config))
        self._otel_exporter = otel_exporter
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
        return RequestTrace(next(self._ids), model, version, request_id, traceparent, self._ensure_sink())


# --- W3C trace context from the frontends -------------------------------------------------------------


def traceparent_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The `traceparent` entry of gRPC invocation metadata (keys arrive lower-case), if any."""
    if not metadata:
        return None
    for key, value in metadata:
        if key == "traceparent":
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


# --- --trace-config ------------------------------------------------------------------------------------


def parse_trace_config(entries: Iterable[str]) -> TraceConfig:
    """Triton's `--trace-config [<mode>,]<setting>=<value>` flags, in order, into a TraceConfig."""
    config = TraceConfig()
    levels: list[str] = []
    for entry in entries:
        scope, setting = "", entry
        if "," in entry.partition("=")[0]:
            scope, _, setting = entry.partition(",")
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ValueError(f"--trace-config '{entry}' must look like [<mode>,]<setting>=<value>")
        key = key.strip().replace("_", "-")
        if scope not in ("", "triton", "opentelemetry"):
            raise ValueError(f"--trace-config '{entry}': unknown trace mode '{scope}'")
        if scope == "opentelemetry":
            config = _otel_option(config, key, value, entry)
            continue
        if key == "level":
            if value not in TRACE_LEVELS:
                raise ValueError(f"--trace-config '{entry}': level must be OFF, TIMESTAMPS or TENSORS")
            levels = [] if value == "OFF" else [*levels, value]
            config = dataclasses.replace(config, level=tuple(levels) or ("OFF",))
        elif key in ("rate", "count", "log-frequency"):
            number = _int_option(entry, value, -1 if key == "count" else 0)
            field = {"rate": "rate", "count": "count", "log-frequency": "log_frequency"}[key]
            config = dataclasses.replace(config, **cast(dict[str, Any], {field: number}))
        elif key == "file":
            config = dataclasses.replace(config, file=value)
        elif key == "mode":
            if value not in TRACE_MODES:
                raise ValueError(f"--trace-config '{entry}': mode must be triton or opentelemetry")
            config = dataclasses.replace(config, mode=value)
        else:
            raise ValueError(f"--trace-config '{entry}': unknown setting '{key}'")
    return config


def _otel_option(config: TraceConfig, key: str, value: str, entry: str) -> TraceConfig:
    if key == "url":
        return dataclasses.replace(config, otel_url=value)
    if key == "resource":
        name, sep, item = value.partition("=")
        if not sep or not name:
            raise ValueError(f"--trace-config '{entry}': resource must look like <key>=<value>")
        return dataclasses.replace(config, otel_resource=(*config.otel_resource, (name, item)))
    bsp = {
        "bsp-max-queue-size": "max_queue_size",
        "bsp-schedule-delay": "schedule_delay_millis",
        "bsp-max-export-batch-size": "max_export_batch_size",
    }
    if key in bsp:
        return dataclasses.replace(
            config, otel_bsp=(*config.otel_bsp, (bsp[key], _int_option(entry, value, 1)))
        )
    raise ValueError(f"--trace-config '{entry}': unknown opentelemetry setting '{key}'")


def _int_option(entry: str, value: str, lowest: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"--trace-config '{entry}': expected an integer") from None
    if number < lowest:
        raise ValueError(f"--trace-config '{entry}': must be at least {lowest}")
    return number
