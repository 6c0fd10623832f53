"""Supervisor: starts the frontend worker processes, starts again one that dies, stops them all.

Workers are children of the engine's main thread: each asks the kernel to kill it when that
thread ends (PR_SET_PDEATHSIG), and exits by itself when its link to the engine drops. They are
started with subprocess (vfork + exec: grpc's fork handlers, which would complain about the
engine's gRPC threads, do not run) and awaited through a pidfd, without a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("modelport.server")

FIRST_RESTART_DELAY_S = 0.1
MAX_RESTART_DELAY_S = 10.0
STABLE_AFTER_S = 30.0  # a worker that ran this long starts again without delay growth
STOP_MARGIN_S = 5.0  # beyond the grace, how long stopping workers may take before they are killed


class WorkerStartError(Exception):
    """A worker could not start (it logged why: typically a port in use)."""


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass(slots=True)
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0  # quick deaths in a row


class Supervisor:
    """`count` worker processes, each started with `command(index)`; each says hello when it serves."""

    def __init__(self, count: int, command: Callable[[int], list[str]]) -> None:
        self._command = command
        self._workers = [_Worker(index) for index in range(count)]
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    def hello(self, index: int, pid: int) -> None:
        """A worker's link is up and its ports listen."""
        if 0 <= index < len(self._workers):
            worker = self._workers[index]
            if worker.process is not None and worker.process.pid == pid:
                worker.ready.set()
                log.debug("frontend worker %d (pid %d) serving", index, pid)

    async def start(self, timeout_s: float) -> None:
        """Start every worker, wait until each serves; WorkerStartError (none left running) if one can't."""
        try:
            for worker in self._workers:
                self._spawn(worker)
        except OSError as exc:
            await self._terminate(0.0)
            raise WorkerStartError(f"cannot start the frontend workers: {exc}") from None
        try:
            await asyncio.wait_for(self._wait_all_ready(), timeout_s)
        except (WorkerStartError, asyncio.TimeoutError) as exc:
            await self._terminate(0.0)
            if isinstance(exc, asyncio.TimeoutError):
                raise WorkerStartError(f"frontend workers did not start within {timeout_s:.0f}s") from None
            raise
        self._watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]
        log.info("Started %d frontend workers (pids %s)", len(self._workers), ", ".join(map(str, self.pids)))

    def _spawn(self, worker: _Worker) -> None:
        worker.ready.clear()
        worker.started_at = time.monotonic()
        worker.process = subprocess.Popen(self._command(worker.index), stdin=subprocess.DEVNULL)

    async def _wait_all_ready(self) -> None:
        for worker in self._workers:
            await self._wait_ready(worker)

    async def _wait_ready(self, worker: _Worker) -> None:
        assert worker.process is not None
        exited = asyncio.ensure_future(exit_code(worker.process))
        ready = asyncio.ensure_future(worker.ready.wait())
        try:
            await asyncio.wait((exited, ready), return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            ready.cancel()
        if not worker.ready.is_set():
            code = worker.process.returncode
            raise WorkerStartError(
                f"frontend worker {worker.index} exited during startup with {describe_exit(code or 0)}"
            )

    async def _watch(self, worker: _Worker) -> None:
        """Start `worker` again whenever it exits while the server runs; quick deaths back off."""
        while True:
            assert worker.process is not None
            code = await exit_code(worker.process)
            if self._stopping:
                return
            lived = time.monotonic() - worker.started_at
            worker.restarts = 0 if lived >= STABLE_AFTER_S else worker.restarts + 1
            delay = min(FIRST_RESTART_DELAY_S * 2 ** max(worker.restarts - 1, 0), MAX_RESTART_DELAY_S)
            log.warning(
                "frontend worker %d (pid %d) exited with %s after %.1fs; starting it again in %.1fs",
                worker.index, worker.process.pid, describe_exit(code), lived, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                self._spawn(worker)
            except OSError as exc:  # no process could be started: the next try waits longer
                log.error("cannot start frontend worker %d: %s", worker.index, exc)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker: each stops listening and finishes what it has in flight within
        `grace_s`; one that overstays is killed."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self._terminate(grace_s + STOP_MARGIN_S)

    async def _terminate(self, wait_s: float) -> None:
        self._stopping = True
        running = [w.process for w in self._workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM if wait_s > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.gather(*(exit_code(p) for p in running)), wait_s or None)
        except asyncio.TimeoutError:
            for process in running:
                if process.poll() is None:
                    log.warning("frontend worker (pid %d) did not stop in time; killing it", process.pid)
                    process.kill()
            for process in running:
                await exit_code(process)


async def exit_code(process: subprocess.Popen[bytes]) -> int:
    """Wait for `process` to end, on the loop (a pidfd on Linux; a thread elsewhere)."""
    code = process.poll()
    if code is not None:
        return code
    try:
        fd = os.pidfd_open(process.pid)  # not reaped yet (poll() above): the pid is still this process's
    except (AttributeError, OSError):  # no pidfd (Python or kernel): a thread waits
        return await asyncio.to_thread(process.wait)
    loop = asyncio.get_running_loop()
    try:
        ended: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
    return process.wait()
