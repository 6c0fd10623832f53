"""Text crossing a trust boundary: client text going into a log line, server paths going to a client.

Log lines escape control characters, so a request id or model name holding a newline cannot forge a
line. Answers name files relative to the model repository (`mymodel/1/model.onnx`); the absolute
paths stay in the server log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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


def model_repository_of(model_file: Path) -> Path:
    """The repository folder holding `<repository>/<model>/<version>/<model file>`."""
    return model_file.parent.parent.parent


def repository_path(path: str | os.PathLike[str], repository: Path) -> str:
    """`path` as a client may see it: relative to `repository`, or only its file name outside it."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for root in _forms(repository):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def scrub_paths(text: str, repository: Path) -> str:
    """`text` (a foreign error message) with the repository's location removed from the paths it names."""
    for root in _forms(repository):
        text = text.replace(f"{root}{os.sep}", "")
    return text


def _forms(repository: Path) -> list[Path]:
    """The repository as given and as resolved (a symlinked folder shows up either way in messages)."""
    given = Path(os.path.abspath(repository))
    return sorted({given, given.resolve()}, key=lambda root: len(str(root)), reverse=True)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\"/:,;()\[\]]+/)+([^\s'\"/:,;()\[\]]+)")


def hide_paths(text: str) -> str:
    """`text` (an unexpected error's message) with each absolute path cut to its last part."""
    return _ABSOLUTE_PATH.sub(r"\1", text)
