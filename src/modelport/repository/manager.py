"""ModelRepositoryManager: loads, reloads and unloads model versions (startup, the load API, polling).

Every change is a swap. A new or changed version is loaded and warmed while the old one keeps
serving; the moment it is READY new requests go to it, and the old one is retired: it takes no
new requests, the requests already queued or running on it finish (bounded by the drain timeout),
then its instances are closed and its memory released. A failed (re)load leaves whatever was
serving in place, as Triton does. What is loaded, and in which state, lives in the ModelTable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelport.backends.registry import BackendRegistry
from modelport.clock import Deadline
from modelport.config.settings import ServerSettings
from modelport.errors import InvalidInput, ModelportError, ModelUnavailable
from modelport.protocol import ModelConfigProto
from modelport.repository import ensemble_graph, overrides
from modelport.repository.builder import ServedModelBuilder
from modelport.repository.configure import ConfiguredModel, backend_of, configure_model
from modelport.repository.fingerprint import fingerprint_folder
from modelport.repository.mirror import RemoteRepositories
from modelport.repository.overrides import poll_failed
from modelport.repository.process_memory import PROCESS, ProcessMemory
from modelport.repository.records import ModelRecord, ModelTable, retire
from modelport.repository.residency import Residency, folder_bytes
from modelport.repository.routing import policy_from_parameters
from modelport.repository.served import ServedModel
from modelport.repository.source import ModelFolder, read_model_folder, scan_repositories
from modelport.repository.version_policy import select_versions
from modelport.scheduling.ensemble import EnsembleCore

log = logging.getLogger(__name__)

_LOAD_CONCURRENCY = 4


@dataclass(slots=True)
class _Loaded:
    version: int
    served: ServedModel | None = None
    error: str = ""


class ModelRepositoryManager:
    """Owns every model version's lifecycle; `models` answers which READY version serves a request."""

    def __init__(
        self,
        settings: ServerSettings,
        backends: BackendRegistry,
        core: EnsembleCore,
        *,
        drain_timeout_s: float | None = None,
    ) -> None:
        self._settings = settings
        self.models = ModelTable()
        self._builder = ServedModelBuilder(settings, backends, core, self.models)
        self.response_cache = self._builder.response_cache  # None without --cache-config
        self._backends = backends
        self._locks: dict[str, asyncio.Lock] = {}  # one per model name: its loads and unloads take turns
        self._load_slots: asyncio.Semaphore | None = None
        self._drain_timeout_s = settings.exit_timeout_secs if drain_timeout_s is None else drain_timeout_s
        self.remotes = RemoteRepositories(settings.remote_repositories)  # s3:// gs:// as:// roots' mirrors
        memory = ProcessMemory() if settings.model_memory_accounting == PROCESS else None
        self.residency = Residency(self.models, settings.model_memory_budget, memory)

    @property
    def settings(self) -> ServerSettings:
        return self._settings

    # --- startup -------------------------------------------------------------------------
    async def start(self) -> None:
        """Scan the repositories and load what the control mode says to load."""
        settings = self._settings
        if self.residency.memory is not None:
            self.residency.memory.take_baseline()
        await self.sync_remotes()
        folders = await asyncio.to_thread(
            scan_repositories, settings.model_repositories, settings.model_config_name
        )
        for folder in folders.values():
            self.models.add(ModelRecord(folder))
        names = self._startup_models(list(folders))
        await asyncio.gather(*(self._load_quietly(name, folders[name]) for name in names))

    async def sync_remotes(self) -> dict[Path, str]:
        """Download what changed in the remote roots; why each unreadable root could not be read."""
        return await asyncio.to_thread(self.remotes.sync) if self.remotes else {}

    def _startup_models(self, names: list[str]) -> list[str]:
        if self._settings.model_control_mode != "explicit" or "*" in self._settings.load_models:
            return names
        for missing in set(self._settings.load_models) - set(names):
            folder = ModelFolder(missing, self._settings.model_repositories[0], {})
            record = self.models.add(ModelRecord(folder))
            record.requested = True
            record.error = f"failed to load '{missing}': not found in any model repository"
            if self.remotes.reason():
                record.error += f" ({self.remotes.reason()})"
        return [n for n in self._settings.load_models if n in names]

    async def _load_quietly(self, name: str, folder: ModelFolder) -> None:
        try:
            await self.load(name, folder=folder)
        except ModelportError as exc:
            log.debug("startup load of '%s' failed: %s", name, exc.message)

    # --- load ----------------------------------------------------------------------------
    async def load(
        self,
        name: str,
        *,
        config: ModelConfigProto | None = None,
        files: Mapping[str, bytes] | None = None,
        folder: ModelFolder | None = None,
        demand: bool = False,
    ) -> None:
        """(Re)load `name` from disk, or from a config / file override; raises what failed.

        Only what changed is reloaded (a config change or an override reloads every version); an
        unchanged, loaded model is a no-op. New versions serve as soon as they are READY, and
        versions the policy no longer selects are retired afterwards, only if every load worked.
        A load asked for by an inference request (`demand`) does not make the model count for
        strict readiness. The memory budget admits a model before it loads (see `Residency`).
        """
        overrides.check_model_name(name)
        if files and config is None:
            raise poll_failed(name)
        lock = self._lock(name)
        try:
            async with lock:
                await self._load_locked(name, config, files or {}, folder, demand)
        finally:
            if self.models.get(name) is None and not lock.locked():
                self._locks.pop(name, None)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _load_locked(
        self,
        name: str,
        config: ModelConfigProto | None,
        files: Mapping[str, bytes],
        folder: ModelFolder | None,
        demand: bool = False,
    ) -> None:
        if folder is None:
            await self.sync_remotes()  # an explicit load sees the bucket as it is now
        on_disk = folder if folder is not None else await asyncio.to_thread(self.find_folder, name)
        if on_disk is None and not files:
            raise poll_failed(name, self.remotes.reason())
        workdir: Path | None = None
        source = on_disk
        if files:  # written before the model is known, so a refused override leaves no trace
            workdir, source = await asyncio.to_thread(overrides.materialize, name, on_disk, files)
        record = self.models.add(ModelRecord(on_disk or ModelFolder(name, Path(), {})))
        if workdir is not None:
            record.workdirs.add(workdir)
        assert source is not None
        record.requested = record.requested or not demand
        try:
            size = await asyncio.to_thread(folder_bytes, source.path)
            backend = ""
            if self.residency.memory is not None:  # its factor estimates the model's memory
                backend = await asyncio.to_thread(backend_of, source, self._settings, config)
            admitted = await self.residency.admit(name, size, self.unload, backend)
        except ModelportError:
            record.discard_unused_workdirs()
            raise
        started = time.perf_counter()
        ok = False
        try:
            await self._apply(record, source, config, workdir)
            ok = True
        finally:
            if admitted:
                self.residency.loaded(name, time.perf_counter() - started, ok)
            record.discard_unused_workdirs()
        if on_disk is not None:
            record.folder = on_disk

    async def _apply(
        self, record: ModelRecord, folder: ModelFolder, config: ModelConfigProto | None, workdir: Path | None
    ) -> None:
        name = folder.name
        fingerprint = await asyncio.to_thread(fingerprint_folder, folder)
        try:
            configured = await asyncio.to_thread(
                configure_model, folder, self._settings, self._backends,
                override=config,
            )  # fmt: skip
            wanted = select_versions(name, configured.spec.version_policy, list(folder.versions))
            traffic = policy_from_parameters(configured.spec.parameters)
        except ModelportError as exc:
            log.error("failed to load model '%s': %s", name, exc.message)
            record.fail_model(exc.message)
            raise InvalidInput(_load_failed_message(folder, exc.message)) from None
        forced = config is not None or record.overridden
        shared_changed = forced or fingerprint.shared != record.applied_shared
        serving = record.serving()
        to_load = [
            v
            for v in wanted
            if v not in serving
            or shared_changed
            or fingerprint.versions.get(v) != record.applied_versions.get(v)
        ]
        record.error = ""
        record.forget_unwanted_failures(wanted)
        if not to_load and set(serving) == set(wanted):
            record.router.config_policy = traffic
            log.info("model '%s' is unchanged; nothing to load", name)
            return
        results = await asyncio.gather(
            *(self._load_version(record, configured, v, folder.versions[v], workdir) for v in to_load)
        )
        for result in results:
            if result.served is not None:
                record.applied_versions[result.version] = fingerprint.versions.get(result.version, ())
        if any(r.served is not None for r in results) or not to_load:
            record.applied_shared = fingerprint.shared
            record.overridden = config is not None
            record.router.config_policy = traffic
        failures = [r for r in results if r.served is None]
        if failures:
            first = failures[0]
            raise InvalidInput(
                f"load failed for model '{name}': version {first.version} is at UNAVAILABLE state: "
                f"{first.error}"
            )
        await record.retire_versions([v for v in serving if v not in wanted], self._drain_deadline())

    async def _load_version(
        self,
        record: ModelRecord,
        configured: ConfiguredModel,
        version: int,
        version_dir: Path,
        workdir: Path | None,
    ) -> _Loaded:
        name = configured.spec.name
        record.mark_loading(version)
        try:
            if configured.spec.ensemble is not None:
                await self._load_composing_models(configured)  # before taking a slot: they need one
            async with self._slots():
                served = await self._builder.build(configured, version, version_dir)
        except ModelportError as exc:
            log.error("failed to load '%s' version %d: %s", name, version, exc.message)
            record.mark_failed(version, exc.message)
            return _Loaded(version, error=exc.message)
        replaced = record.swap(version, served, workdir)  # new requests for this version get the new copy
        log.info("successfully loaded '%s' version %d", name, version)
        if replaced is not None:
            await retire(replaced, self._drain_deadline())
        return _Loaded(version, served=served)

    def _slots(self) -> asyncio.Semaphore:
        if self._load_slots is None:
            self._load_slots = asyncio.Semaphore(_LOAD_CONCURRENCY)
        return self._load_slots

    def _drain_deadline(self) -> Deadline:
        """How long a replaced or unloaded version's requests may take to finish."""
        return Deadline(self._drain_timeout_s)

    def find_folder(self, name: str) -> ModelFolder | None:
        """The model's folder as it is on disk now (None if absent or not unique)."""
        if name.startswith("."):
            return None
        try:
            found = [root / name for root in self._settings.model_repositories if (root / name).is_dir()]
        except OSError:  # a name the file system refuses (too long, say) names no folder
            return None
        if len(found) != 1:
            if len(found) > 1:
                log.error("model '%s' is not unique across all model repositories", name)
            return None
        return read_model_folder(found[0], self._settings.model_config_name)

    async def _load_composing_models(self, configured: ConfiguredModel) -> None:
        """Load the models an ensemble's steps call that are not serving yet, as Triton does."""
        spec = configured.spec
        assert spec.ensemble is not None
        await asyncio.to_thread(ensemble_graph.refuse_cycle, spec, self.find_folder)
        steps = spec.ensemble.model_names
        reasons = await asyncio.gather(*(self._ensure_loaded(name) for name in steps))
        missing = [f"{name} ({reason})" for name, reason in zip(steps, reasons, strict=True) if reason]
        if missing:
            raise InvalidInput(
                f"ensemble '{spec.name}' contains models that are not available: {', '.join(missing)}"
            )

    async def _ensure_loaded(self, name: str) -> str:
        """Load `name` unless a version of it serves; the reason it cannot serve, or ''."""
        record = self.models.get(name)
        if record is not None and record.serving():
            return ""
        try:
            await self.load(name)
        except ModelportError as exc:
            return exc.message
        return ""

    # --- unload and retire ---------------------------------------------------------------
    async def unload(self, name: str, *, unload_dependents: bool = False) -> None:
        """Retire every loaded version of `name`; its versions become UNAVAILABLE 'unloaded'."""
        await self._unload(name, unload_dependents, self._drain_deadline())
        await asyncio.to_thread(release_memory)

    async def _unload(self, name: str, unload_dependents: bool, deadline: Deadline) -> None:
        record = self.models.get(name)
        if record is None:
            return
        async with self._lock(name):
            await record.retire_versions(list(record.serving()), deadline)
            record.router.reset_api()
            record.applied_shared = None
            record.applied_versions.clear()
            record.overridden = False
            self.residency.release(name)
        if unload_dependents:
            for dependent in ensemble_graph.dependents(self.models, name):
                await self._unload(dependent, True, deadline)

    async def remove(self, name: str) -> None:
        """The model's folder is gone (poll mode): unload it and forget it."""
        record = self.models.get(name)
        if record is None:
            return
        await self.unload(name)
        async with self._lock(name):
            if not record.serving():
                self.models.pop(name)

    async def stop(self, deadline: Deadline) -> None:
        """Unload everything; requests still in flight at `deadline` are failed, not waited for."""
        await asyncio.gather(*(self._unload(name, False, deadline) for name in self.models.names()))
        await asyncio.to_thread(release_memory)

    def refuse_repository_change(self) -> None:
        """Triton answers load/unload requests this way unless the control mode is explicit."""
        if self._settings.model_control_mode != "explicit":
            raise ModelUnavailable("explicit model load / unload is not allowed if polling is enabled")


def _load_failed_message(folder: ModelFolder, reason: str) -> str:
    if not folder.versions:
        return f"load failed for model '{folder.name}': {reason}"
    version = max(folder.versions)
    return f"load failed for model '{folder.name}': version {version} is at UNAVAILABLE state: {reason}"


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
