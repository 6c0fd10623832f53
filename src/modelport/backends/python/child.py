"""ModelProcess: one incarnation of a Python model's process, the pipe to it, and what waits on it."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from modelport.errors import ModelportError
from modelport.tensor.records import ResponseSink


class ProcessCrashed(Exception):
    """The model process ended while a request was running."""

    def __init__(self, error: ModelportError) -> None:
        super().__init__(error.message)
        self.error = error


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(eq=False)
class ModelProcess:
    """One incarnation of the model process and the state tied to it."""

    process: BaseProcess
    conn: Connection
    started: Future[int] = field(default_factory=Future)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    pending: dict[int, Future[Any]] = field(default_factory=dict)
    streams: dict[int, ResponseSink] = field(default_factory=dict)
    state_lock: threading.Lock = field(default_factory=threading.Lock)  # guards dead, pending, streams
    dead: bool = False
    crash: ModelportError | None = None
    reader: threading.Thread | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.conn.send(message)
