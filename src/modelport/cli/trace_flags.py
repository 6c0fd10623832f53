"""Triton's `--trace-config [<mode>,]<setting>=<value>` flags, parsed into the server's TraceConfig."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, cast

from modelport.config.settings import TraceConfig
from modelport.observability.tracing.settings import TRACE_LEVELS, TRACE_MODES


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
