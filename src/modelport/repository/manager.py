"""ModelRepositoryManager: loads, reloads and unloads model versions; answers which version serves a request.

Every change is a swap. A new or changed version is loaded and warmed while the old one keeps
serving; the moment it is READY new requests go to it, and the old one is retired: it takes no
new requests, the requests already queued or running on it finish (bounded by the drain timeout),
then its instances are closed and its memory released. A failed (re)load leaves whatever was
serving in place, as Triton does.
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
from dataclasses import dataclass, field
from pathlib import Path

from modelport.backends.base import InstancePlacement, ModelInstance
from modelport.backends.devices import cpu_count, visible_gpu_count
from modelport.backends.registry import BackendRegistry
from modelport.config.ensemble import composing_problems, cycle_message, find_ensemble_cycle, inherited_labels
from modelport.config.model_config import parse_pbtxt
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.model import ServedModel
from modelport.core.routing import TrafficPolicy, TrafficRouter, policy_from_parameters
from modelport.errors import InternalError, InvalidInput, ModelNotFound, ModelportError, ModelUnavailable
from modelport.observability.stats import ModelStats
from modelport.protocol import ModelConfigProto
from modelport.repository import overrides
from modelport.repository.configure import ConfiguredModel, configure_model
from modelport.repository.fingerprint import FileStamp, fingerprint_folder
from modelport.repository.lifecycle import UNLOADED, IndexEntry, ModelState
from modelport.repository.source import ModelFolder, read_model_folder, scan_repositories
from modelport.repository.version_policy import select_versions
from modelport.repository.warmup import build_samples, run_warmup
from modelport.scheduling.ensemble import EnsembleCore, EnsembleScheduler
from modelport.scheduling.factory import create_scheduler
from modelport.scheduling.instances import InstancePool

log = logging.getLogger(__name__)

_LOAD_CONCURRENCY = 4
_DRAIN_POLL_S = 0.005


@dataclass(slots=True)
class VersionRecord:
    state: ModelState
    reason: str = ""
    served: ServedModel | None = None
    workdir: Path | None = None  # the private override copy this version was loaded from


@dataclass(slots=True)
class ModelRecord:
    """What the manager knows about one model: its folder, its versions and a model-level error."""

    folder: ModelFolder
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    error: str = ""
    requested: bool = False  # asked to be loaded (counts for strict readiness)
    applied_shared: tuple[FileStamp, ...] | None = None  # config/labels the loaded versions came from
    applied_versions: dict[int, tuple[FileStamp, ...]] = field(default_factory=dict)
    overridden: bool = False  # the serving versions came from a load-API override
    router: TrafficRouter = field(default_factory=TrafficRouter)
    workdirs: set[Path] = field(default_factory=set)  # private override copies not yet deleted

    def serving(self) -> dict[int, ServedModel]:
        return {
            v: e.served
            for v, e in self.versions.items()
            if e.served is not None and e.state is ModelState.READY
        }


@dataclass(slots=True)
class _Loaded:
    version: int
    served: ServedModel | None = None
    error: str = ""


class ModelRepositoryManager:
    """Owns every model version's lifecycle; the core asks it for READY versions."""

    def __init__(
        self, settings: ServerSettings, backends: BackendRegistry, *, drain_timeout_s: float | None = None
    ) -> None:
        self._settings = settings
        self._backends = backends
        self._models: dict[str, ModelRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one per model name: its loads and unloads take turns
        self._load_slots: asyncio.Semaphore | None = None
        self._core: EnsembleCore | None = None  # what ensemble steps call; see attach_core
        self._drain_timeout_s = settings.exit_timeout_secs if drain_timeout_s is None else drain_timeout_s

    @property
    def settings(self) -> ServerSettings:
        return self._settings

    # --- startup -------------------------------------------------------------------------
    async def start(self) -> None:
        """Scan the repositories and load what the control mode says to load."""
        folders = await asyncio.to_thread(scan_repositories, self._settings.model_repositories)
        self._models = {name: ModelRecord(folder) for name, folder in folders.items()}
        names = self._startup_models(list(folders))
        await asyncio.gather(*(self._load_quietly(name) for name in names))

    def _startup_models(self, names: list[str]) -> list[str]:
        if self._settings.model_control_mode != "explicit":
            return names
        if "*" in self._settings.load_models:
            return names
        for missing in set(self._settings.load_models) - set(names):
            record = ModelRecord(ModelFolder(missing, self._settings.model_repositories[0], {}))
            record.requested = True
            record.error = f"failed to load '{missing}': not found in any model repository"
            self._models[missing] = record
        return [n for n in self._settings.load_models if n in names]

    async def _load_quietly(self, name: str) -> None:
        try:
            await self.load(name)
        except ModelportError as exc:
            log.debug("startup load of '%s' failed: %s", name, exc.message)

    def known_models(self) -> list[str]:
        return sorted(self._models)

    # --- load ----------------------------------------------------------------------------
    async def load(
        self,
        name: str,
        *,
        config: ModelConfigProto | None = None,
        files: Mapping[str, bytes] | None = None,
        folder: ModelFolder | None = None,
    ) -> None:
        """(Re)load `name` from disk, or from a config / file override; raises what failed.

        Only what changed is reloaded (a config change or an override reloads every version); an
        unchanged, loaded model is a no-op. New versions serve as soon as they are READY, and
        versions the policy no longer selects are retired afterwards, only if every load worked.
        """
        if files and config is None:
            raise InternalError(f"failed to load '{name}', failed to poll from model repository")
        if not overrides.is_plain_name(name):
            raise InternalError(f"failed to load '{name}', failed to poll from model repository")
        lock = self._lock(name)
        try:
            async with lock:
                await self._load_locked(name, config, files or {}, folder)
        finally:
            if name not in self._models and not lock.locked():
                self._locks.pop(name, None)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _load_locked(
        self,
        name: str,
        config: ModelConfigProto | None,
        files: Mapping[str, bytes],
        folder: ModelFolder | None,
    ) -> None:
        on_disk = folder if folder is not None else await asyncio.to_thread(self._find_folder, name)
        if on_disk is None and not files:
            raise InternalError(f"failed to load '{name}', failed to poll from model repository")
        record = self._models.setdefault(name, ModelRecord(on_disk or ModelFolder(name, Path(), {})))
        workdir: Path | None = None
        source = on_disk
        if files:
            copy, source = await asyncio.to_thread(overrides.materialize, name, on_disk, files)
            record.workdirs.add(copy)
            workdir = copy
        assert source is not None
        record.requested = True
        try:
            await self._apply(record, source, config, workdir)
        finally:
            self._discard_unused_workdirs(record)
        if on_disk is not None:
            record.folder = on_disk

    async def _apply(
        self, record: ModelRecord, folder: ModelFolder, config: ModelConfigProto | None, workdir: Path | None
    ) -> None:
        name = folder.name
        fingerprint = await asyncio.to_thread(fingerprint_folder, folder)
        try:
            configured = await asyncio.to_thread(
                configure_model,
                folder,
                self._settings,
                self._backends,
                override=config,
                gpu_count=visible_gpu_count(),
            )
            wanted = select_versions(name, configured.spec.version_policy, list(folder.versions))
            traffic = policy_from_parameters(configured.spec.parameters)
        except ModelportError as exc:
            self._fail_model(record, folder, exc.message)
            raise InvalidInput(self._load_failed_message(name, folder, exc.message)) from None
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
        _forget_unwanted_failures(record, wanted)
        if not to_load and set(serving) == set(wanted):
            record.router.config_policy = traffic
            log.info("model '%s' is unchanged; nothing to load", name)
            return
        results = await asyncio.gather(
            *(self._load_version(record, configured, v, folder.versions[v], workdir) for v in to_load)
        )
        failures = [r for r in results if r.served is None]
        for result in results:
            if result.served is not None:
                record.applied_versions[result.version] = fingerprint.versions.get(result.version, ())
        if any(r.served is not None for r in results) or not to_load:
            record.applied_shared = fingerprint.shared
            record.overridden = config is not None
            record.router.config_policy = traffic
        if failures:
            first = failures[0]
            raise InvalidInput(
                f"load failed for model '{name}': version {first.version} is at UNAVAILABLE state: "
                f"{first.error}"
            )
        retired = [v for v in serving if v not in wanted]
        await self._retire_versions(record, retired)

    def _load_failed_message(self, name: str, folder: ModelFolder, reason: str) -> str:
        version = max(folder.versions) if folder.versions else None
        if version is None:
            return f"load failed for model '{name}': {reason}"
        return f"load failed for model '{name}': version {version} is at UNAVAILABLE state: {reason}"

    def _fail_model(self, record: ModelRecord, folder: ModelFolder, reason: str) -> None:
        """A model-level failure (config, policy): shown on versions that are not serving."""
        log.error("failed to load model '%s': %s", folder.name, reason)
        if record.serving():
            log.error("model '%s': keeping the versions that are serving", folder.name)
            return
        record.error = reason
        for version in folder.versions:
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, reason)

    async def _load_version(
        self,
        record: ModelRecord,
        configured: ConfiguredModel,
        version: int,
        version_dir: Path,
        workdir: Path | None,
    ) -> _Loaded:
        name = configured.spec.name
        current = record.versions.get(version)
        if current is None or current.served is None:
            record.versions[version] = VersionRecord(ModelState.LOADING)
        try:
            if configured.spec.ensemble is not None:
                await self._load_composing_models(configured.spec)  # before taking a slot: they need one
            async with self._slots():
                served = await self._create_served(configured, version, version_dir)
        except ModelportError as exc:
            log.error("failed to load '%s' version %d: %s", name, version, exc.message)
            if current is None or current.served is None:
                record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, exc.message)
            return _Loaded(version, error=exc.message)
        # Swap: from here on new requests for this version get the new copy.
        record.versions[version] = VersionRecord(ModelState.READY, served=served, workdir=workdir)
        log.info("successfully loaded '%s' version %d", name, version)
        if current is not None and current.served is not None:
            await self._retire(current.served)
        return _Loaded(version, served=served)

    def _slots(self) -> asyncio.Semaphore:
        if self._load_slots is None:
            self._load_slots = asyncio.Semaphore(_LOAD_CONCURRENCY)
        return self._load_slots

    async def _create_served(
        self, configured: ConfiguredModel, version: int, version_dir: Path
    ) -> ServedModel:
        spec = configured.spec
        if spec.ensemble is not None:
            return self._create_ensemble(configured, version)
        samples = await asyncio.to_thread(build_samples, spec, version_dir.parent)
        pool = await self._create_pool(spec, version, version_dir)
        try:
            await run_warmup(spec, version, pool, samples)
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
        stats = ModelStats(histograms=self._settings.allow_metrics and self._settings.metrics_histograms)
        scheduler = create_scheduler(spec, pool, stats)
        return ServedModel(spec, version, scheduler, configured.labels, stats)

    async def _create_pool(self, spec: ModelSpec, version: int, version_dir: Path) -> InstancePool:
        model_path = version_dir / spec.default_model_filename
        if not model_path.exists():
            raise ModelUnavailable(f"unable to find '{model_path}' for model '{spec.name}' version {version}")
        backend = self._backends.get(spec.backend)
        results = await asyncio.gather(
            *(asyncio.to_thread(backend.create_instance, spec, model_path, p) for p in _placements(spec)),
            return_exceptions=True,
        )
        instances: list[ModelInstance] = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for instance in instances:
                with contextlib.suppress(Exception):
                    instance.close()
            error = errors[0]
            if isinstance(error, ModelportError):
                raise error
            raise InternalError(f"{type(error).__name__}: {error}") from error
        return InstancePool(spec.name, instances, thread_name=f"{spec.name}-v{version}")

    def _find_folder(self, name: str) -> ModelFolder | None:
        """The model's folder as it is on disk now (None if absent or not unique)."""
        if name.startswith("."):
            return None
        found = [root / name for root in self._settings.model_repositories if (root / name).is_dir()]
        if len(found) != 1:
            if len(found) > 1:
                log.error("model '%s' is not unique across all model repositories", name)
            return None
        return read_model_folder(found[0])

    # --- ensembles -----------------------------------------------------------------------
    def attach_core(self, core: EnsembleCore) -> None:
        """The server core, through which ensemble steps call their models (before the first load)."""
        self._core = core

    async def _load_composing_models(self, spec: ModelSpec) -> None:
        """Load the models an ensemble's steps call that are not serving yet, as Triton does."""
        assert spec.ensemble is not None
        steps = spec.ensemble.model_names

        def steps_of(name: str) -> tuple[str, ...]:
            return steps if name == spec.name else self._ensemble_steps_on_disk(name)

        # Found before any dependency is loaded: loading a circle would wait on itself.
        cycle = await asyncio.to_thread(find_ensemble_cycle, spec.name, steps_of)
        if cycle is not None:
            raise InvalidInput(cycle_message(cycle))
        reasons = await asyncio.gather(*(self._ensure_loaded(name) for name in steps))
        missing = [f"{name} ({reason})" for name, reason in zip(steps, reasons, strict=True) if reason]
        if missing:
            raise InvalidInput(
                f"ensemble '{spec.name}' contains models that are not available: {', '.join(missing)}"
            )

    async def _ensure_loaded(self, name: str) -> str:
        """Load `name` unless a version of it serves; the reason it cannot serve, or ''."""
        record = self._models.get(name)
        if record is not None and record.serving():
            return ""
        try:
            await self.load(name)
        except ModelportError as exc:
            return exc.message
        return ""

    def _ensemble_steps_on_disk(self, name: str) -> tuple[str, ...]:
        """The models the steps of `name` call, if its config on disk is an ensemble's."""
        folder = self._find_folder(name)
        if folder is None or not folder.config_path.is_file():
            return ()
        try:
            config = parse_pbtxt(folder.config_path.read_text(encoding="utf-8"), str(folder.config_path))
        except (ModelportError, OSError, UnicodeDecodeError):
            return ()
        if config.platform != "ensemble":
            return ()
        return tuple(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))

    def _create_ensemble(self, configured: ConfiguredModel, version: int) -> ServedModel:
        """An ensemble version: checked against its loaded composing models, scheduled through the core."""
        spec = configured.spec
        assert spec.ensemble is not None
        if self._core is None:
            raise ModelUnavailable(f"ensemble '{spec.name}' needs the server core, which is not attached")
        composing: list[ServedModel] = []
        for step in spec.ensemble.steps:
            wanted = "" if step.model_version < 0 else str(step.model_version)
            try:
                composing.append(self.acquire(step.model_name, wanted))
            except (ModelNotFound, ModelUnavailable) as exc:
                raise InvalidInput(f"ensemble '{spec.name}', {step.label}: {exc.message}") from None
        problems = composing_problems(spec, [m.spec for m in composing])
        if problems:
            raise InvalidInput(f"invalid ensemble '{spec.name}': " + "; ".join(problems))
        labels = inherited_labels(spec, configured.labels, [m.labels for m in composing])
        stats = ModelStats(histograms=self._settings.allow_metrics and self._settings.metrics_histograms)
        return ServedModel(spec, version, EnsembleScheduler(spec, self._core, stats), labels, stats)

    # --- unload and retire ---------------------------------------------------------------
    async def unload(self, name: str, *, unload_dependents: bool = False) -> None:
        """Retire every loaded version of `name`; its versions become UNAVAILABLE 'unloaded'."""
        await self._unload(name, unload_dependents)
        await asyncio.to_thread(release_memory)

    async def _unload(self, name: str, unload_dependents: bool) -> None:
        record = self._models.get(name)
        if record is None:
            return
        async with self._lock(name):
            await self._retire_versions(record, list(record.serving()))
            record.router.reset_api()
            record.applied_shared = None
            record.applied_versions.clear()
            record.overridden = False
        if unload_dependents:
            for dependent in self._dependents(name):
                await self._unload(dependent, True)

    async def remove(self, name: str) -> None:
        """The model's folder is gone (poll mode): unload it and forget it."""
        record = self._models.get(name)
        if record is None:
            return
        await self.unload(name)
        async with self._lock(name):
            if not record.serving():
                self._models.pop(name, None)

    def _dependents(self, name: str) -> list[str]:
        """Ensembles whose steps use `name`."""
        found: list[str] = []
        for other, record in self._models.items():
            for served in record.serving().values():
                steps = served.spec.proto.ensemble_scheduling.step
                if any(step.model_name == name for step in steps):
                    found.append(other)
                    break
        return found

    async def _retire_versions(self, record: ModelRecord, versions: list[int]) -> None:
        entries = [(v, record.versions[v]) for v in versions if record.versions[v].served is not None]
        for _, entry in entries:
            entry.state = ModelState.UNLOADING
        await asyncio.gather(
            *(self._retire(entry.served) for _, entry in entries if entry.served is not None)
        )
        for version, _ in entries:
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, UNLOADED)
            record.applied_versions.pop(version, None)
            log.info("successfully unloaded '%s' version %d", record.folder.name, version)
        self._discard_unused_workdirs(record)

    async def _retire(self, served: ServedModel) -> None:
        """Wait for the requests on `served` to finish (bounded), then stop it and free its instances."""
        deadline = time.monotonic() + self._drain_timeout_s
        while served.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL_S)
        if served.inflight > 0:
            log.warning(
                "'%s' version %d: %d request(s) still in flight after %.1fs; stopping anyway",
                served.name,
                served.version,
                served.inflight,
                self._drain_timeout_s,
            )
        await served.scheduler.stop()

    def _discard_unused_workdirs(self, record: ModelRecord) -> None:
        """Delete the override copies no loaded version comes from any more."""
        in_use = {
            e.workdir for e in record.versions.values() if e.workdir is not None and e.served is not None
        }
        for path in record.workdirs - in_use:
            overrides.discard(path)
            record.workdirs.discard(path)
        for entry in record.versions.values():
            if entry.workdir is not None and entry.workdir not in in_use:
                entry.workdir = None

    async def stop(self) -> None:
        """Unload everything."""
        await asyncio.gather(*(self._unload(name, False) for name in list(self._models)))
        await asyncio.to_thread(release_memory)

    # --- serving -------------------------------------------------------------------------
    def acquire(self, name: str, version: str = "", *, route: bool = False) -> ServedModel:
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
        record = self._models.get(name)
        if record is None or not record.serving():
            raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
        return record.router.policy, record.router.source, sorted(record.serving())

    def set_traffic(
        self, name: str, *, weights: dict[int, int] | object | None = ..., pin: int | object | None = ...
    ) -> None:
        """Change the API traffic settings; `...` leaves a setting alone, None clears it.

        Named versions must be READY now, so a typo cannot silently send traffic nowhere.
        """
        record = self._models.get(name)
        if record is None or not record.serving():
            raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
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
        for record in self._models.values():
            if not record.requested:
                continue
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

    def refuse_repository_change(self) -> None:
        """Triton answers load/unload requests this way unless the control mode is explicit."""
        if self._settings.model_control_mode != "explicit":
            raise ModelUnavailable("explicit model load / unload is not allowed if polling is enabled")


def _forget_unwanted_failures(record: ModelRecord, wanted: list[int]) -> None:
    """Versions the policy no longer selects and that are not serving stop counting as failed."""
    for version, entry in record.versions.items():
        if version not in wanted and entry.served is None and entry.reason != UNLOADED:
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, UNLOADED)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _placements(spec: ModelSpec) -> list[InstancePlacement]:
    total = max(spec.instance_count, 1)
    threads = max(1, cpu_count() // total)
    placements: list[InstancePlacement] = []
    index = 0
    for group in spec.instance_groups:
        devices: list[int | None] = list(group.gpus) if group.kind == "KIND_GPU" else [None]
        for device in devices:
            for _ in range(group.count):
                placements.append(InstancePlacement(group, index, device, threads))
                index += 1
    return placements
