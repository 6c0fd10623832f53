"""trace_mode "opentelemetry": finished traces as spans InferRequest > queue, compute, exported over
OTLP/HTTP. OpenTelemetry is optional (`pip install modelport[tracing]`): imported only in here, on use."""

from __future__ import annotations

from typing import Any

from modelport.config.settings import TraceConfig
from modelport.errors import ModelportError
from modelport.observability.tracing.record import RequestTrace

DEFAULT_OTLP_URL = "http://localhost:4318/v1/traces"


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
