"""Text crossing a trust boundary: client text going into a log line.

Log lines escape control characters, so a request id or model name holding a newline cannot forge a
line.
"""

from __future__ import annotations

import re

# C0 controls (tab included), DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`, `\\u2028`)."""
    if text.isascii() and text.isprintable():  # the usual case, checked in C
        return text
    return _CONTROL.sub(_escape, text)

