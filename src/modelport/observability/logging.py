"""Log setup: Triton-style lines (`I1125 10:42:00.123456 1234 module] message`)."""

from __future__ import annotations

import logging
import os
import sys
import time

_LEVEL_LETTER = {"DEBUG": "V", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "E"}


class TritonStyleFormatter(logging.Formatter):
    """One line per record: level letter, date, time with microseconds, pid, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.localtime(record.created)
        micros = int((record.created % 1) * 1_000_000)
        letter = _LEVEL_LETTER.get(record.levelname, "I")
        head = f"{letter}{time.strftime('%m%d %H:%M:%S', stamp)}.{micros:06d} {os.getpid()} {record.name}]"
        line = f"{head} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(verbose: int = 0, info: bool = True, warning: bool = True, error: bool = True) -> None:
    """Send modelport's logs to stderr at the level the --log-* flags ask for."""
    if verbose > 0:
        level = logging.DEBUG
    elif info:
        level = logging.INFO
    elif warning:
        level = logging.WARNING
    elif error:
        level = logging.ERROR
    else:
        level = logging.CRITICAL + 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TritonStyleFormatter())
    root = logging.getLogger("modelport")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
