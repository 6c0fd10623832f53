"""ModelTable: what is known of every model and version, their states, and which version serves a request.

The per-version state machine lives here: LOADING -> READY (a swap puts the new copy in place),
READY -> UNLOADING -> UNAVAILABLE "unloaded" (retire: wait for the version's requests, bounded,
then stop it), and failures as UNAVAILABLE with their reason. Lookups resolve (name, version)
once; inference takes a counted ModelHandle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelport.clock import Deadline
from modelport.errors import InvalidInput, ModelNotFound, ModelUnavailable
from modelport.repository import overrides
from modelport.repository.fingerprint import FileStamp
from modelport.repository.lifecycle import UNLOADED, IndexEntry, ModelState
from modelport.repository.routing import TrafficPolicy, TrafficRouter
from modelport.repository.served import InflightCounter, ModelHandle, ServedModel
from modelport.repository.source import ModelFolder

log = logging.getLogger(__name__)


@dataclass(slots=True)
class VersionRecord:
    state: ModelState
    reason: str = ""
    served: ServedModel | None = None
    workdir: Path | None = None  # the private override copy this version was loaded from


@dataclass(slots=True)
class ModelRecord:
    """One model: its folder, its versions, a model-level error and what its versions came from."""

    folder: ModelFolder
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    error: str = ""
    requested: bool = False  # asked to be loaded (counts for strict readiness)
    applied_shared: tuple[FileStamp, ...] | None = None  # config/labels the loaded versions came from
    applied_versions: dict[int, tuple[FileStamp, ...]] = field(default_factory=dict)
    overridden: bool = False  # the serving versions came from a load-API override
    router: TrafficRouter = field(default_factory=TrafficRouter)
    workdirs: set[Path] = field(default_factory=set)  # private override copies not yet deleted

    @property
    def name(self) -> str:
        return self.folder.name

    def serving(self) -> dict[int, ServedModel]:
        return {
            v: e.served
            for v, e in self.versions.items()
            if e.served is not None and e.state is ModelState.READY
        }

    def mark_loading(self, version: int) -> None:
        """A version starts loading; one that serves keeps serving (and READY) until its swap."""
        current = self.versions.get(version)
        if current is None or current.served is None:
            self.versions[version] = VersionRecord(ModelState.LOADING)

    def mark_failed(self, version: int, reason: str) -> None:
        """A version failed to load; one that serves keeps serving."""
        current = self.versions.get(version)
        if current is None or current.served is None:
            self.versions[version] = VersionRecord(ModelState.UNAVAILABLE, reason)

    def swap(self, version: int, served: ServedModel, workdir: Path | None) -> ServedModel | None:
        """From now on requests for `version` get `served`; returns the copy it replaced, to retire."""
        current = self.versions.get(version)
        self.versions[version] = VersionRecord(ModelState.READY, served=served, workdir=workdir)
        return current.served if current is not None else None

    def fail_model(self, reason: str) -> None:
        """A model-level failure (config, policy): shown on versions that are not serving."""
        if self.serving():
            log.error("model '%s': keeping the versions that are serving", self.name)
            return
        self.error = reason
        for version in self.folder.versions:
            self.versions[version] = VersionRecord(ModelState.UNAVAILABLE, reason)

    def forget_unwanted_failures(self, wanted: list[int]) -> None:
        """Versions the policy no longer selects and that are not serving stop counting as failed."""
        for version, entry in self.versions.items():
            if version not in wanted and entry.served is None and entry.reason != UNLOADED:
                self.versions[version] = VersionRecord(ModelState.UNAVAILABLE, UNLOADED)

    async def retire_versions(self, versions: list[int], deadline: Deadline) -> None:
        """READY -> UNLOADING -> UNAVAILABLE 'unloaded', each version once its requests are done."""
        entries = [(v, self.versions[v]) for v in versions if self.versions[v].served is not None]
        for _, entry in entries:
            entry.state = ModelState.UNLOADING
        await asyncio.gather(*(retire(entry.served, deadline) for _, entry in entries if entry.served))
        for version, _ in entries:
            self.versions[version] = VersionRecord(ModelState.UNAVAILABLE, UNLOADED)
            self.applied_versions.pop(version, None)
            log.info("successfully unloaded '%s' version %d", self.name, version)
        self.discard_unused_workdirs()

    def discard_unused_workdirs(self) -> None:
        """Delete the override copies no loaded version comes from any more."""
        in_use = {e.workdir for e in self.versions.values() if e.workdir is not None and e.served is not None}
        for path in self.workdirs - in_use:
            overrides.discard(path)
            self.workdirs.discard(path)
        for entry in self.versions.values():
            if entry.workdir is not None and entry.workdir not in in_use:
                entry.workdir = None


async def retire(served: ServedModel, deadline: Deadline) -> None:
    """Wait for the requests on `served` to finish (until `deadline`), then stop it and free its instances."""
    left = await served.inflight.wait_idle(deadline)
    if left:
        log.warning(
            "'%s' version %d: %d request(s) still in flight at the deadline; stopping anyway",
            served.name,
            served.version,
            left,
        )
    await served.scheduler.stop(deadline)


class ModelTable:
    """Every known model's record; answers which READY version serves (name, version)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelRecord] = {}
        self.requests = InflightCounter()  # inference requests holding a handle, on any version

    def get(self, name: str) -> ModelRecord | None:
        return self._models.get(name)

    def add(self, record: ModelRecord) -> ModelRecord:
        return self._models.setdefault(record.name, record)

    def pop(self, name: str) -> None:
        self._models.pop(name, None)

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self) -> Iterator[ModelRecord]:
        return iter(list(self._models.values()))

    # --- resolving requests --------------------------------------------------------------
    def lookup(self, name: str, version: str = "", *, route: bool = False) -> ServedModel:
        """The READY version for (name, version); NOT_FOUND / UNAVAILABLE otherwise.

        Without a version: with `route` (inference) the traffic policy picks and advances its
        split; without it (metadata, config, readiness) the pinned or newest READY version answers.
        """
        record = self._models.get(name)
        if record is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        if version:
            entry = record.versions.get(int(version)) if version.isdigit() else None
            if entry is None or (entry.state is ModelState.UNAVAILABLE and entry.reason == UNLOADED):
                raise ModelNotFound(f"Request for unknown model: '{name}' version {version} is not found")
            if entry.state is not ModelState.READY or entry.served is None:
                raise ModelUnavailable(
                    f"Request for unknown model: '{name}' version {version} is not at ready state"
                )
            return entry.served
        serving = record.serving()
        ready = sorted(serving)
        chosen = record.router.choose(ready) if route else record.router.peek(ready)
        if chosen is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
        return serving[chosen]

    def acquire(self, name: str, version: str = "") -> ModelHandle:
        """The version that serves one inference request (routed by traffic), counted in flight."""
        return ModelHandle(self.lookup(name, version, route=True), self.requests)

    def served_versions(self, name: str = "") -> list[ServedModel]:
        """Every READY version (of one model, or of all), sorted by name then version."""
        names = [name] if name else sorted(self._models)
        found: list[ServedModel] = []
        for model in names:
            record = self._models.get(model)
            if record is not None:
                serving = record.serving()
                found.extend(serving[v] for v in sorted(serving))
        return found

    def ready_versions(self, name: str) -> list[int]:
        record = self._models.get(name)
        return sorted(record.serving()) if record is not None else []

    # --- traffic -------------------------------------------------------------------------
    def traffic(self, name: str) -> tuple[TrafficPolicy, str, list[int]]:
        """The effective traffic policy of a model, where it comes from, and its READY versions."""
        record = self._serving_record(name)
        return record.router.policy, record.router.source, sorted(record.serving())

    def set_traffic(
        self, name: str, *, weights: dict[int, int] | object | None = ..., pin: int | object | None = ...
    ) -> None:
        """Change the API traffic settings; `...` leaves a setting alone, None clears it.

        Named versions must be READY now, so a typo cannot silently send traffic nowhere.
        """
        record = self._serving_record(name)
        ready = set(record.serving())
        if isinstance(weights, dict):
            missing = sorted(set(weights) - ready)
            if missing:
                raise InvalidInput(
                    f"traffic weights for model '{name}' name version(s) {missing} that are not READY; "
                    f"READY versions: {sorted(ready)}"
                )
        if isinstance(pin, int) and pin not in ready:
            raise InvalidInput(
                f"cannot pin model '{name}' to version {pin}: it is not READY; "
                f"READY versions: {sorted(ready)}"
            )
        if weights is not ...:
            record.router.set_weights(weights if isinstance(weights, dict) else None)
        if pin is not ...:
            record.router.set_pin(pin if isinstance(pin, int) else None)

    def _serving_record(self, name: str) -> ModelRecord:
        record = self._models.get(name)
        if record is None or not record.serving():
            raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
        return record

    # --- index and readiness -------------------------------------------------------------
    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """One row per known (model, version), sorted by name then version."""
        rows: list[IndexEntry] = []
        for name in sorted(self._models):
            record = self._models[name]
            if not record.versions:
                state = ModelState.UNAVAILABLE if record.error else None
                rows.append(IndexEntry(name, state=state, reason=record.error))
            for version in sorted(record.versions):
                entry = record.versions[version]
                rows.append(IndexEntry(name, str(version), entry.state, entry.reason))
        return [r for r in rows if r.state is ModelState.READY] if ready_only else rows

    def all_ready(self) -> bool:
        """Strict readiness: every version of every requested model is serving or deliberately retired.

        As in Triton, a version that failed to load keeps the server not ready. Beyond Triton, a
        version that is LOADING next to a READY version of the same model (a rollout) and a version
        being UNLOADED on purpose do not make the server unready, so a rollout never takes a
        replica out of its load balancer.
        """
        return all(_record_ready(record) for record in self._models.values() if record.requested)


def _record_ready(record: ModelRecord) -> bool:
    if record.error:
        return False
    serving = any(e.state is ModelState.READY for e in record.versions.values())
    for entry in record.versions.values():
        if entry.state in (ModelState.READY, ModelState.UNLOADING):
            continue
        if entry.state is ModelState.UNAVAILABLE and entry.reason == UNLOADED:
            continue
        if entry.state is ModelState.LOADING and serving:
            continue
        return False
    return True
