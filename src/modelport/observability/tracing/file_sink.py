"""trace_mode "triton": finished traces as JSON lines of Triton's timestamps, appended to the
trace_file of each trace's model setting (every log_frequency traces)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from modelport.observability.tracing.record import RequestTrace
from modelport.observability.tracing.settings import TraceSettings

log = logging.getLogger(__name__)


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
