"""ModelRepositoryManager: loads and unloads model versions and answers which version serves a request."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from modelport.backends.base import InstancePlacement, ModelInstance
from modelport.backends.devices import cpu_count, visible_gpu_count
from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.model import ServedModel
from modelport.errors import ModelNotFound, ModelportError, ModelUnavailable, Unsupported
from modelport.observability.stats import ModelStats
from modelport.repository.configure import ConfiguredModel, configure_model
from modelport.repository.lifecycle import IndexEntry, ModelState
from modelport.repository.source import ModelFolder, scan_repositories
from modelport.repository.version_policy import select_versions
from modelport.scheduling.factory import create_scheduler
from modelport.scheduling.instances import InstancePool

log = logging.getLogger(__name__)

_LOAD_CONCURRENCY = 4


@dataclass(slots=True)
class VersionRecord:
    state: ModelState
    reason: str = ""
    served: ServedModel | None = None


@dataclass(slots=True)
class ModelRecord:
    """What the manager knows about one model: its folder, its versions and a model-level error."""

    folder: ModelFolder
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    error: str = ""
    requested: bool = False  # asked to be loaded (counts for strict readiness)


class ModelRepositoryManager:
    """Owns every model version's lifecycle; the core asks it for READY versions."""

    def __init__(self, settings: ServerSettings, backends: BackendRegistry) -> None:
        self._settings = settings
        self._backends = backends
        self._models: dict[str, ModelRecord] = {}
        self._load_slots = asyncio.Semaphore(_LOAD_CONCURRENCY)

    async def start(self) -> None:
        """Scan the repositories and load what the control mode says to load."""
        folders = await asyncio.to_thread(scan_repositories, self._settings.model_repositories)
        self._models = {name: ModelRecord(folder) for name, folder in folders.items()}
        names = self._startup_models(list(folders))
        await asyncio.gather(*(self.load(name) for name in names))

    def _startup_models(self, names: list[str]) -> list[str]:
        if self._settings.model_control_mode != "explicit":
            return names
        if "*" in self._settings.load_models:
            return names
        for missing in set(self._settings.load_models) - set(names):
            self._models[missing] = ModelRecord(ModelFolder(missing, self._settings.model_repositories[0], {}))
            self._models[missing].requested = True
            self._models[missing].error = f"failed to load '{missing}': not found in any model repository"
        return [n for n in self._settings.load_models if n in names]

    async def load(self, name: str) -> None:
        """Load every version the policy selects; failures leave versions UNAVAILABLE with a reason."""
        record = self._models[name]
        record.requested = True
        async with self._load_slots:
            try:
                configured = await asyncio.to_thread(
                    configure_model, record.folder, self._settings, self._backends, gpu_count=visible_gpu_count()
                )
                versions = select_versions(name, configured.spec.version_policy, list(record.folder.versions))
            except ModelportError as exc:
                self._fail_model(record, exc.message)
                return
            record.error = ""
            await asyncio.gather(*(self._load_version(record, configured, v) for v in versions))

    def _fail_model(self, record: ModelRecord, reason: str) -> None:
        log.error("failed to load model '%s': %s", record.folder.name, reason)
        record.error = reason
        for version in record.folder.versions:
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, reason)

    async def _load_version(self, record: ModelRecord, configured: ConfiguredModel, version: int) -> None:
        name = record.folder.name
        record.versions[version] = VersionRecord(ModelState.LOADING)
        try:
            pool = await self._create_pool(configured.spec, version, record.folder.versions[version])
        except ModelportError as exc:
            log.error("failed to load '%s' version %d: %s", name, version, exc.message)
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, exc.message)
            return
        stats = ModelStats()
        scheduler = create_scheduler(configured.spec, pool, stats)
        served = ServedModel(configured.spec, version, scheduler, configured.labels, stats)
        record.versions[version] = VersionRecord(ModelState.READY, served=served)
        log.info("successfully loaded '%s' version %d", name, version)

    async def _create_pool(self, spec: ModelSpec, version: int, version_dir: object) -> InstancePool:
        from pathlib import Path

        model_path = Path(str(version_dir)) / spec.default_model_filename
        if not model_path.exists():
            raise ModelUnavailable(f"unable to find '{model_path}' for model '{spec.name}' version {version}")
        backend = self._backends.get(spec.backend)
        placements = _placements(spec)
        instances: list[ModelInstance] = list(
            await asyncio.gather(
                *(asyncio.to_thread(backend.create_instance, spec, model_path, p) for p in placements)
            )
        )
        return InstancePool(instances, thread_name=f"{spec.name}-v{version}")

    async def unload(self, name: str) -> None:
        """Retire every loaded version of `name`; its versions become UNAVAILABLE 'unloaded'."""
        record = self._models.get(name)
        if record is None:
            return
        for version, entry in list(record.versions.items()):
            if entry.served is None:
                continue
            record.versions[version] = VersionRecord(ModelState.UNLOADING)
            await entry.served.scheduler.stop()
            record.versions[version] = VersionRecord(ModelState.UNAVAILABLE, "unloaded")

    async def stop(self) -> None:
        """Unload everything."""
        await asyncio.gather(*(self.unload(name) for name in list(self._models)))

    def acquire(self, name: str, version: str = "") -> ServedModel:
        """The READY version that serves a request for (name, version); NOT_FOUND / UNAVAILABLE otherwise."""
        record = self._models.get(name)
        if record is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        if version:
            entry = record.versions.get(int(version)) if version.isdigit() else None
            if entry is None or (entry.state is ModelState.UNAVAILABLE and entry.reason == "unloaded"):
                raise ModelNotFound(f"Request for unknown model: '{name}' version {version} is not found")
            if entry.served is None:
                raise ModelUnavailable(f"Request for unknown model: '{name}' version {version} is not at ready state")
            return entry.served
        ready = [v for v in sorted(record.versions) if record.versions[v].served is not None]
        if not ready:
            raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
        served = record.versions[ready[-1]].served
        assert served is not None
        return served

    def served_versions(self, name: str = "") -> list[ServedModel]:
        """Every READY version (of one model, or of all), sorted by name then version."""
        names = [name] if name else sorted(self._models)
        found: list[ServedModel] = []
        for model in names:
            record = self._models.get(model)
            if record is None:
                continue
            for version in sorted(record.versions):
                served = record.versions[version].served
                if served is not None:
                    found.append(served)
        return found

    def ready_versions(self, name: str) -> list[int]:
        record = self._models.get(name)
        if record is None:
            return []
        return [v for v in sorted(record.versions) if record.versions[v].served is not None]

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
        """Strict readiness: every version of every requested model is READY (or was unloaded)."""
        for record in self._models.values():
            if not record.requested:
                continue
            if record.error:
                return False
            for entry in record.versions.values():
                if entry.state is not ModelState.READY and entry.reason != "unloaded":
                    return False
        return True

    def refuse_repository_change(self) -> None:
        """Triton answers load/unload requests this way unless the control mode is explicit."""
        if self._settings.model_control_mode != "explicit":
            raise ModelUnavailable("explicit model load / unload is not allowed if polling is enabled")
        raise Unsupported("explicit model load / unload is not available yet")


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
