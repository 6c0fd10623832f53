"""Request tracing: Triton's trace settings (global and per model), sampling, and trace export.

Off by default. While every trace level is OFF, `Tracing.active` is False and the only cost on the
request path is reading that attribute. A sampled request gets a `RequestTrace` that records
timestamps from the injected monotonic clock (request, queue, compute); when it ends, the trace goes
to a sink:
  * trace_mode "opentelemetry" (otel_sink): spans `InferRequest` > `queue`, `compute`, exported over
    OTLP/HTTP (optional dependency: `pip install modelport[tracing]`), child of the client's traceparent;
  * trace_mode "triton" (file_sink): one JSON object per trace, appended to trace_file.
The `--trace-config` flags are parsed by the CLI (modelport.cli.trace_flags).
"""

from modelport.config.settings import TraceConfig
from modelport.observability.tracing.facade import Tracing
from modelport.observability.tracing.file_sink import TritonFileSink
from modelport.observability.tracing.record import RequestTrace, TraceSink, WallClock
from modelport.observability.tracing.settings import (
    SETTING_KEYS,
    TRACE_LEVELS,
    TRACE_MODES,
    TraceSetting,
    TraceSettings,
)
from modelport.observability.tracing.traceparent import traceparent_from_metadata

__all__ = [
    "SETTING_KEYS",
    "TRACE_LEVELS",
    "TRACE_MODES",
    "RequestTrace",
    "TraceConfig",
    "TraceSetting",
    "TraceSettings",
    "TraceSink",
    "Tracing",
    "TritonFileSink",
    "WallClock",
    "traceparent_from_metadata",
]
