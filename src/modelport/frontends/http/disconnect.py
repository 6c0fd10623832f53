"""Work that ends when the HTTP client goes away: the streamed and long answers (generate) use it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.types import Receive

from modelport.frontends.http.body import ClientDisconnected


async def unless_disconnected(receive: Receive, work: Awaitable[None]) -> None:
    """Run `work` (after the request body was read); if the client goes away first, cancel it, let
    its cleanup run, and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
    if task.cancelled():
        raise ClientDisconnected()
    task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
