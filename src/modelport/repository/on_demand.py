"""OnDemandLoader (`--load-on-demand`): an inference request for a model in the repository that is
not loaded loads it first; concurrent first requests share one load. Every request through it marks
its model used, for the memory budget's least-recently-used order.

A waiting request holds the model in the residency (it is not evicted between its load and the
request taking its handle). A load that fails answers every waiting request with its reason.
"""

from __future__ import annotations

import asyncio
import logging

from modelport.errors import ModelNotFound, ModelportError, ModelUnavailable
from modelport.repository.manager import ModelRepositoryManager
from modelport.repository.overrides import is_plain_name
from modelport.repository.served import ModelHandle

log = logging.getLogger(__name__)


class OnDemandLoader:
    """Resolves an inference request's model, loading it once when it is known but not loaded."""

    def __init__(self, manager: ModelRepositoryManager, *, load: bool = True) -> None:
        self._manager = manager
        self._load_missing = load  # False (a budget alone): only mark requests' models as used
        self._models = manager.models
        self._residency = manager.residency
        self._loads: dict[str, asyncio.Future[None]] = {}

    def acquire_resident(self, name: str, version: str = "") -> ModelHandle:
        """The serving version, if loaded now (NOT_FOUND / UNAVAILABLE otherwise); marks it used."""
        handle = self._models.acquire(name, version)
        self._residency.touch(name)
        return handle

    async def acquire(self, name: str, version: str = "") -> ModelHandle:
        """The version that serves one request, loading the model first when it is not loaded."""
        try:
            return self.acquire_resident(name, version)
        except (ModelNotFound, ModelUnavailable):
            if not self._load_missing or not await self._in_repository(name):
                raise
        self._residency.hold(name)
        try:
            await self.load(name)
            return self.acquire_resident(name, version)
        finally:
            self._residency.release_hold(name)

    async def ensure(self, name: str, version: str = "") -> None:
        """Load `name` for a metadata or config request when it is not loaded (no handle, no routing)."""
        try:
            self._models.lookup(name, version)
            return
        except (ModelNotFound, ModelUnavailable):
            if not self._load_missing or not await self._in_repository(name):
                return  # the request's own lookup answers with the usual error
        self._residency.hold(name)  # not evicted before the caller's lookup, right after this returns
        try:
            await self.load(name)
        finally:
            self._residency.release_hold(name)

    async def load(self, name: str) -> None:
        """Load `name` unless it serves; requests arriving meanwhile wait for the same load."""
        record = self._models.get(name)
        if record is not None and record.serving() and name not in self._loads:
            return
        pending = self._loads.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._load(name))
            self._loads[name] = pending
            pending.add_done_callback(lambda done: self._finished(name, done))
        # A request that goes away does not cancel the load the others wait for.
        await asyncio.shield(pending)

    async def _load(self, name: str) -> None:
        log.info("loading '%s' on demand", name)
        try:
            await self._manager.load(name, demand=True)
        except ModelportError as exc:
            raise ModelUnavailable(f"failed to load model '{name}' on demand: {exc.message}") from None

    def _finished(self, name: str, done: asyncio.Future[None]) -> None:
        self._loads.pop(name, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have gone

    async def _in_repository(self, name: str) -> bool:
        if self._models.get(name) is not None:
            return True
        if not is_plain_name(name):  # never a path out of the repository
            return False
        return await asyncio.to_thread(self._manager.find_folder, name) is not None
