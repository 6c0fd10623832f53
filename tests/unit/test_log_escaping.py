"""Client text in log lines: control characters are escaped, so a request id or a model name holding a
newline cannot start a line of its own (text formats); JSON lines stay JSON."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from modelport.observability.logging import Iso8601Formatter, JsonFormatter, TritonStyleFormatter
from modelport.observability.redaction import escape_control

FORGED = "I0101 00:00:00.000000 1 modelport.x] forged"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, 'quoted' and é", "plain text, 'quoted' and é"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("next\x85line\u2028sep\u2029para", "next\\x85line\\u2028sep\\u2029para"),
        ("", ""),
    ],
)
def test_escape_control(text: str, escaped: str) -> None:
    assert escape_control(text) == escaped


def _record(message: str, *args: object, request_id: str | None = None) -> logging.LogRecord:
    record = logging.LogRecord("modelport.x", logging.INFO, __file__, 1, message, args, None)
    record.request_id = request_id
    return record


@pytest.mark.parametrize("formatter", [TritonStyleFormatter(), Iso8601Formatter()])
def test_text_formats_keep_one_record_on_one_line(formatter: logging.Formatter) -> None:
    record = _record("loading model '%s'", f"m\n{FORGED}", request_id=f"id\n{FORGED}\r")
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line
    assert f"[request id: id\\n{FORGED}\\r] loading model 'm\\n{FORGED}'" in line


def test_exceptions_still_span_their_own_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("modelport.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = TritonStyleFormatter().format(record)
    assert text.splitlines()[1] == "Traceback (most recent call last):"
    assert text.endswith("ValueError: boom")


def test_json_lines_carry_the_client_text_unchanged_and_escaped_by_json() -> None:
    line = JsonFormatter().format(_record("model '%s'", "m\nx", request_id="id\n2"))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "model 'm\nx'" and doc["request_id"] == "id\n2"
