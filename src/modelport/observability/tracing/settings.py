"""Trace settings: the effective setting value object, and Triton's trace-extension updates to the
global setting and per-model overrides (validation, `null` resets, trace_count accounting)."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelport.config.settings import TraceConfig
from modelport.errors import InvalidInput, Unsupported

TRACE_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
TRACE_MODES = ("triton", "opentelemetry")
SETTING_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file", "trace_mode")


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
        if "trace_file" in changes:
            # Where the server writes is chosen at startup only (--trace-config triton,file=...): a
            # client must never pick a path the server appends to.
            raise Unsupported("trace file location can not be updated through network protocol")
        parsed = {key: None if value is None else _parse_value(key, value) for key, value in changes.items()}
        current = self.get(model)
        mode = parsed.get("trace_mode")
        if mode is not None and mode != current.mode:
            raise InvalidInput("'trace_mode' can only be chosen at startup (--trace-config mode=...)")
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
