"""Log setup and the logging extension: Triton-style, ISO8601 or JSON lines, request ids, run-time levels.

Every line logged while a request is being handled carries its request id: the client's `id`, or
one generated the first time such a line is written (so requests that log nothing pay nothing).
Triton's --log-info / --log-warning / --log-error switch their levels independently, and
--log-verbose turns on DEBUG; `LogController` applies those and changes them at run time.
The text formats escape control characters in messages and request ids, so client text cannot
forge a log line (JSON lines are escaped by JSON itself).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.config.settings import ServerSettings
from modelport.errors import InvalidInput
from modelport.observability.redaction import escape_control

LOGGER_NAME = "modelport"
LOG_FORMATS = ("default", "ISO8601", "json")
_LEVEL_LETTER = {"DEBUG": "V", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "E"}

# The request being handled in this task: None outside requests, "" until an id is needed.
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("modelport_request_id", default=None)


def bind_request_id(request_id: str) -> None:
    """Mark the current task as handling the request with this id ("" = generate one if it logs)."""
    _REQUEST_ID.set(request_id)


def current_request_id() -> str | None:
    """The id log lines of the current task carry (generating one if the client sent none)."""
    request_id = _REQUEST_ID.get()
    if request_id == "":
        request_id = uuid.uuid4().hex[:16]
        _REQUEST_ID.set(request_id)
    return request_id


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class LevelSwitch(logging.Filter):
    """Triton's independent switches: info, warning and error each on or off; verbose > 0 adds DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.verbose = 0
        self.info = self.warning = self.error = True

    def filter(self, record: logging.LogRecord) -> bool:
        level = record.levelno
        if level >= logging.ERROR:
            return self.error
        if level >= logging.WARNING:
            return self.warning
        if level >= logging.INFO:
            return self.info
        return self.verbose > 0

    def lowest_level(self) -> int:
        """The logger level that lets every switched-on record through (and nothing below)."""
        if self.verbose > 0:
            return logging.DEBUG
        switches = ((self.info, logging.INFO), (self.warning, logging.WARNING), (self.error, logging.ERROR))
        for enabled, level in switches:
            if enabled:
                return level
        return logging.CRITICAL + 1


def _message(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    # Client text (request ids, model and tensor names) must not start a line of its own here.
    text = escape_control(record.getMessage())
    request_id = getattr(record, "request_id", None)
    if request_id is not None:
        text = f"[request id: {escape_control(request_id)}] {text}"
    if record.exc_info:
        text += "\n" + formatter.formatException(record.exc_info)
    return text


class TritonStyleFormatter(logging.Formatter):
    """`I1125 10:42:00.123456 1234 modelport.x] message`: level letter, local date and time, pid, logger."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.localtime(record.created)
        micros = int((record.created % 1) * 1_000_000)
        letter = _LEVEL_LETTER.get(record.levelname, "I")
        head = f"{letter}{time.strftime('%m%d %H:%M:%S', stamp)}.{micros:06d} {record.process} {record.name}]"
        return f"{head} {_message(record, self)}"


class Iso8601Formatter(logging.Formatter):
    """`2026-11-25T10:42:00Z I 1234 modelport.x] message` (Triton's --log-format=ISO8601, UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        letter = _LEVEL_LETTER.get(record.levelname, "I")
        return f"{stamp} {letter} {record.process} {record.name}] {_message(record, self)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, µs), level, pid, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        micros = int((record.created % 1) * 1_000_000)
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{micros:06d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            doc["request_id"] = request_id
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


_FORMATTERS: dict[str, type[logging.Formatter]] = {
    "default": TritonStyleFormatter,
    "ISO8601": Iso8601Formatter,
    "json": JsonFormatter,
}


@dataclass(frozen=True, slots=True)
class LogState:
    """What the logging extension shows and changes."""

    info: bool = True
    warning: bool = True
    error: bool = True
    verbose: int = 0
    format: str = "default"
    file: str = ""

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> LogState:
        return cls(
            info=settings.log_info,
            warning=settings.log_warning,
            error=settings.log_error,
            verbose=settings.log_verbose,
            format=settings.log_format,
            file=settings.log_file,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "log_file": self.file,
            "log_info": self.info,
            "log_warning": self.warning,
            "log_error": self.error,
            "log_verbose_level": self.verbose,
            "log_format": self.format,
        }


class LogController:
    """Owns modelport's log handler; `update` is the logging extension's POST."""

    def __init__(self, state: LogState, logger_name: str = LOGGER_NAME) -> None:
        self._state = state
        self._logger_name = logger_name
        self._switch = LevelSwitch()
        self._handler: logging.Handler | None = None

    @property
    def state(self) -> LogState:
        return self._state

    def apply(self) -> None:
        """Install (or adjust) the handler on the `modelport` logger for the current state."""
        logger = logging.getLogger(self._logger_name)
        if self._handler is None:
            self._handler = _open_handler(self._state.file)
            self._handler.addFilter(RequestIdFilter())
            self._handler.addFilter(self._switch)
            logger.handlers[:] = [self._handler]
            logger.propagate = False
        self._handler.setFormatter(_FORMATTERS[self._state.format]())
        switch = self._switch
        switch.info, switch.warning, switch.error = self._state.info, self._state.warning, self._state.error
        switch.verbose = self._state.verbose
        logger.setLevel(switch.lowest_level())

    def close(self) -> None:
        """Detach and close the handler (tests, and a clean shutdown with --log-file)."""
        if self._handler is not None:
            logger = logging.getLogger(self._logger_name)
            if self._handler in logger.handlers:
                logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def settings(self) -> dict[str, Any]:
        """Triton's logging JSON: log_file, log_info/warning/error, log_verbose_level, log_format."""
        return self._state.to_json()

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply the settings in `changes` (Triton's POST /v2/logging body); returns the new settings."""
        new = self._state
        for key, value in changes.items():
            if key in ("log_info", "log_warning", "log_error"):
                if not isinstance(value, bool):
                    raise InvalidInput(f"expected a boolean for '{key}', got {value!r}")
                switches: dict[str, Any] = {key.removeprefix("log_"): value}
                new = dataclasses.replace(new, **switches)
            elif key == "log_verbose_level":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidInput(f"expected an integer >= 0 for 'log_verbose_level', got {value!r}")
                new = dataclasses.replace(new, verbose=value)
            elif key == "log_format":
                if value not in LOG_FORMATS:
                    choices = ", ".join(LOG_FORMATS)
                    raise InvalidInput(f"invalid 'log_format' {value!r}: expected one of {choices}")
                new = dataclasses.replace(new, format=value)
            elif key == "log_file" and value != self._state.file:
                raise InvalidInput("'log_file' cannot change at run time; restart with --log-file")
        self._state = new
        self.apply()
        return self.settings()


def _open_handler(path: str) -> logging.Handler:
    if path:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        return logging.FileHandler(path, mode="a", encoding="utf-8")
    return logging.StreamHandler(sys.stderr)


def configure_logging(settings: ServerSettings) -> LogController:
    """Send modelport's logs where and how the --log-* flags ask; returns the controller doing it."""
    controller = LogController(LogState.from_settings(settings))
    controller.apply()
    return controller
