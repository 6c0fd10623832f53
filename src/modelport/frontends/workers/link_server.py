"""LinkServer: the engine's end of the frontend workers' links; runs each request frame as a task.

A request is answered by the handler of its kind; a CANCEL frame cancels it (the worker's client
went away), and a worker whose link drops has its requests cancelled: nobody is left to answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelport.frontends.workers.link import Body, FrameProtocol, Kind, LinkError

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0

# Sends one PART (head, body) of a streamed answer ahead of the answer, once the link has room.
PartWriter = Callable[[Any, Body], Awaitable[None]]
# Answers a request frame's (head, body) with the answer's (head, body), optionally after PARTs;
# raises nothing but CancelledError (each handler turns its own failures into answers).
Handler = Callable[[Any, Body, PartWriter], Awaitable[tuple[Any, Body]]]


class _WorkerConnection(FrameProtocol):
    """One worker's link, seen from the engine."""

    def __init__(self, server: LinkServer) -> None:
        super().__init__(self._on_request, server.max_body)
        self._server = server
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.worker: tuple[int, int] | None = None  # (index, pid) from its HELLO

    def _on_request(self, request_id: int, kind: int, head: Any, body: Body) -> None:
        if kind == Kind.CANCEL:
            task = self._tasks.pop(request_id, None)
            if task is not None:
                task.cancel()
            return
        if kind == Kind.HELLO:
            index, pid = head
            self.worker = (int(index), int(pid))
            self._server.on_hello(*self.worker)
            return
        handler = self._server.handlers.get(kind)
        if handler is None:
            log.error("frontend worker %s sent a frame of kind %d; closing its link", self.worker, kind)
            self.close()
            return
        self._tasks[request_id] = asyncio.create_task(self._answer(request_id, handler, head, body))

    async def _answer(self, request_id: int, handler: Handler, head: Any, body: Body) -> None:
        async def part(part_head: Any, part_body: Body) -> None:
            self.send(request_id, Kind.PART, part_head, part_body)
            await self.drain()

        try:
            answer_head, answer_body = await handler(head, body, part)
            del head, body
            self.send(request_id, Kind.ANSWER, answer_head, answer_body)
            del answer_body
            await self.drain()
        except LinkError:
            pass  # the worker is gone, and with it the client that asked
        finally:
            self._tasks.pop(request_id, None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            task.cancel()
        self._server.forget(self)


class LinkServer:
    """Listens on a Unix socket for frontend workers; start() and close() bound its lifetime."""

    def __init__(self, handlers: Mapping[int, Handler], max_body: int) -> None:
        self.handlers = dict(handlers)
        self.max_body = max_body
        self.on_hello: Callable[[int, int], None] = lambda index, pid: None
        self._connections: set[_WorkerConnection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._connect, path)

    def _connect(self) -> _WorkerConnection:
        connection = _WorkerConnection(self)
        self._connections.add(connection)
        return connection

    def forget(self, connection: _WorkerConnection) -> None:
        self._connections.discard(connection)

    async def close(self) -> None:
        """Stop listening and close every link (the workers have stopped by now)."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        if self._connections:
            await asyncio.wait([c.lost for c in self._connections], timeout=CLOSE_TIMEOUT_S)
        await self._server.wait_closed()
        self._server = None
