"""Poll mode: rescan the repositories every --repository-poll-secs and apply what changed.

A change is applied once it has held still for one poll interval (the fingerprint seen now equals
the one seen at the previous scan), so a version folder that is still being copied is not loaded
half-written (a remote root is synced into its local mirror first, so the same holds for a bucket
whose upload is in progress). New and changed models are (re)loaded through the manager, which swaps versions
without dropping requests; models whose folder is gone are unloaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelport.errors import ModelportError
from modelport.repository.fingerprint import ModelFingerprint, fingerprint_folder
from modelport.repository.manager import ModelRepositoryManager
from modelport.repository.source import ModelFolder, scan_repositories

log = logging.getLogger(__name__)

Snapshot = dict[str, ModelFingerprint]


@dataclass(frozen=True, slots=True)
class PollPlan:
    load: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


def plan_changes(applied: Mapping[str, ModelFingerprint], previous: Snapshot, current: Snapshot) -> PollPlan:
    """What to load and remove: differences from `applied` that are the same in two scans in a row."""
    load = tuple(
        sorted(name for name, fp in current.items() if applied.get(name) != fp and previous.get(name) == fp)
    )
    remove = tuple(sorted(name for name in applied if name not in current and name not in previous))
    return PollPlan(load, remove)


class RepositoryPoller:
    """One background task: scan, plan, apply, sleep."""

    def __init__(self, manager: ModelRepositoryManager, interval_s: float) -> None:
        self._manager = manager
        self._interval_s = max(interval_s, 0.05)
        self._applied: dict[str, ModelFingerprint] = {}
        self._previous: Snapshot = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def prime(self) -> None:
        """Take the state on disk now as applied (before the manager's startup load, which it will see)."""
        await self._manager.sync_remotes()
        _, snapshot = await asyncio.to_thread(self._scan)
        self._applied = dict(snapshot)
        self._previous = dict(snapshot)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="repository-poller")

    async def stop(self) -> None:
        """Stop after the change being applied, if any, is done."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_s)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.poll_once()
            except Exception:  # a poll must never kill the poller
                log.exception("repository poll failed")

    async def poll_once(self) -> PollPlan:
        self._note_unreadable(await self._manager.sync_remotes())
        folders, current = await asyncio.to_thread(self._scan)
        plan = plan_changes(self._applied, self._previous, current)
        self._previous = current
        for name in plan.remove:
            log.info("model '%s' was removed from the repository; unloading", name)
            await self._manager.remove(name)
            self._applied.pop(name, None)
        for name in plan.load:
            if self._stopping.is_set():
                break
            log.info("model '%s' changed in the repository; loading", name)
            self._applied[name] = current[name]
            try:
                await self._manager.load(name, folder=folders[name])
            except ModelportError as exc:
                log.error("poll: %s", exc.message)
        return plan

    def _note_unreadable(self, errors: Mapping[Path, str]) -> None:
        """Models of a root that could not be read: loaded ones keep serving, the others show why."""
        for record in self._manager.models:
            reason = errors.get(record.folder.path.parent)
            if reason and not record.serving():
                record.error = f"model repository could not be read: {reason}"

    def _scan(self) -> tuple[dict[str, ModelFolder], Snapshot]:
        settings = self._manager.settings
        folders = scan_repositories(settings.model_repositories, settings.model_config_name)
        return folders, {name: fingerprint_folder(folder) for name, folder in folders.items()}
