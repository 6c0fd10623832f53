"""InferenceServer: the one facade every frontend calls (health, metadata, config, infer, repository)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import numpy as np

from modelport import __version__
from modelport.backends.caller import InferenceCaller
from modelport.backends.registry import BackendRegistry
from modelport.clock import Deadline
from modelport.config.model_config import parse_json, to_json_dict
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.classification import classify
from modelport.core.streaming import StreamItem, stream_decoupled
from modelport.errors import InternalError, InvalidInput, ModelNotFound, ModelUnavailable, Unsupported
from modelport.observability.logging import LogController, LogState, bind_request_id
from modelport.observability.tracing import Tracing
from modelport.protocol import ModelConfigProto
from modelport.repository.lifecycle import IndexEntry
from modelport.repository.manager import ModelRepositoryManager
from modelport.repository.on_demand import OnDemandLoader
from modelport.repository.overrides import poll_failed
from modelport.repository.routing import parse_version_number, parse_weights
from modelport.repository.served import ModelHandle, ServedModel
from modelport.scheduling.normalize import normalize_request
from modelport.shm import SharedMemoryRegistry
from modelport.shm.outputs import output_regions, write_output_regions
from modelport.tensor import datatype
from modelport.tensor.records import InferOutput, InferRequest, InferResponse

EXTENSIONS = (
    "classification",
    "model_repository",
    "model_configuration",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "schedule_policy",
    "system_shared_memory",
    "trace",
    "logging",
)

log = logging.getLogger(__name__)


class InferenceServer:
    """Server-wide operations, independent of HTTP or gRPC.

    It owns the model repository (built here, with this core as what ensemble steps and Python
    models' BLS calls go through), the shared-memory registry, tracing and logging settings.
    """

    def __init__(
        self,
        settings: ServerSettings,
        backends: BackendRegistry | None = None,
        *,
        log_controller: LogController | None = None,
        tracing: Tracing | None = None,
        drain_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self._caller = InferenceCaller(self)  # lets Python models call other models (BLS)
        registry = backends if backends is not None else BackendRegistry.with_builtins(self._caller)
        self.repository = ModelRepositoryManager(settings, registry, self, drain_timeout_s=drain_timeout_s)
        self._models = self.repository.models
        on_demand = settings.load_on_demand or settings.model_memory_budget is not None
        self._on_demand = OnDemandLoader(self.repository, load=settings.load_on_demand) if on_demand else None
        self.response_cache = self.repository.response_cache  # None without --cache-config
        self._logs = log_controller or LogController(LogState.from_settings(settings))
        self.tracing = tracing or Tracing(settings.trace_config)
        self._started = False
        self._startup_done = asyncio.Event()
        self._draining = False  # shutting down: no new inference, what is in flight finishes
        self._exiting = False
        self.shared_memory = SharedMemoryRegistry()

    async def start(self) -> None:
        """Load the startup models (the frontends may already answer health requests meanwhile)."""
        self._caller.start()
        self.tracing.start()
        try:
            await self.repository.start()
        finally:
            self._started = True
            self._startup_done.set()

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Unload every model; requests still running at `deadline` (default: --exit-timeout-secs from
        now) get an error."""
        self._draining = True
        self._exiting = True
        await self.repository.stop(deadline or Deadline(self.settings.exit_timeout_secs))
        self.shared_memory.close()
        await asyncio.to_thread(self.tracing.stop)

    @property
    def started(self) -> bool:
        return self._started

    async def wait_started(self) -> None:
        """Return once the startup load is over (the frontends hold early requests here)."""
        await self._startup_done.wait()

    def begin_shutdown(self) -> None:
        """SIGTERM: readiness turns false and new inference is refused; in-flight requests go on."""
        self._draining = True

    @property
    def inflight(self) -> int:
        """Inference requests inside the server (queued or running) right now."""
        return self._models.requests.count

    async def drain(self, deadline: Deadline) -> int:
        """Wait until no inference is in flight or `deadline` passes; the number still in flight."""
        return await self._models.requests.wait_idle(deadline)

    # --- health and metadata -------------------------------------------------------------
    def is_live(self) -> bool:
        """Live from the moment the frontends answer, also while models load and while draining."""
        return not self._exiting

    def is_ready(self) -> bool:
        if not self._started or self._draining or self._exiting:
            return False
        return self._models.all_ready() if self.settings.strict_readiness else True

    def is_model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._models.lookup(name, version)
        except (ModelNotFound, ModelUnavailable):
            return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.settings.server_id, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        model = self._models.lookup(name, version)
        spec = model.spec
        batch = [-1] if spec.max_batch_size > 0 else []
        return {
            "name": spec.name,
            "versions": [str(v) for v in self._models.ready_versions(name)],
            "platform": spec.metadata_platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype.name, "shape": [*batch, *t.dims]}
                for t in spec.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype.name, "shape": [*batch, *t.dims]}
                for t in spec.outputs
            ],
        }

    def model_spec(self, name: str, version: str = "") -> ModelSpec:
        """The completed config of the version that would serve (name, version); NOT_FOUND otherwise."""
        return self._models.lookup(name, version).spec

    def model_config(self, name: str, version: str = "") -> ModelConfigProto:
        return self.model_spec(name, version).proto

    def model_config_json(self, name: str, version: str = "") -> dict[str, Any]:
        return to_json_dict(self.model_config(name, version))

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        """Triton's statistics JSON for one version, every READY version of a model, or all models."""
        if not name:
            served = self._models.served_versions()
        elif version:
            try:
                served = [self._models.lookup(name, version)]
            except (ModelNotFound, ModelUnavailable):
                raise InvalidInput(f"requested model version is not available for model '{name}'") from None
        else:
            served = self._models.served_versions(name)
            if not served:
                raise InvalidInput(f"requested model '{name}' is not available")
        return {"model_stats": [m.stats.to_json(m.name, str(m.version)) for m in served]}

    # --- repository ----------------------------------------------------------------------
    def served_models(self) -> list[ServedModel]:
        """Every READY model version, sorted by name then version (what /metrics reports)."""
        return self._models.served_versions()

    # --- logging and trace extensions ------------------------------------------------------
    def log_settings(self) -> dict[str, Any]:
        """Triton's logging JSON (log_file, log_info, log_warning, log_error, log_verbose_level,
        log_format)."""
        return self._logs.settings()

    def update_log_settings(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a logging-extension update (bool / int / str values); returns the new settings."""
        return self._logs.update(dict(changes))

    def trace_settings(self, model: str = "") -> dict[str, Any]:
        """Triton's trace-setting JSON, global ("") or one model's (global values where it sets none)."""
        if model:
            self._known_model(model)
        return self.tracing.setting_json(model)

    def update_trace_settings(self, model: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a trace-extension update; a None value resets that setting. Returns the new settings."""
        if model:
            self._known_model(model)
        return self.tracing.update(model, dict(changes))

    def _known_model(self, name: str) -> None:
        if not self.is_model_ready(name):
            raise InvalidInput(f"Request for unknown model : {name}")

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.repository.residency.annotate(self._models.index(ready_only))

    async def load_model(
        self, name: str, config_json: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Repository load: from disk, or with a JSON ModelConfig override and override files.

        `files` maps paths inside the model folder (`<version>/<file>`, an optional `file:` prefix
        is accepted) to their contents; they need `config_json`, as in Triton.
        """
        self.repository.refuse_repository_change()
        config = None
        if config_json is not None:
            try:
                config = parse_json(config_json, f"for model '{name}'")
            except InvalidInput as exc:
                raise poll_failed(name) from exc
        await self.repository.load(name, config=config, files=files)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self.repository.refuse_repository_change()
        await self.repository.unload(name, unload_dependents=unload_dependents)

    # --- traffic between versions (beyond Triton) ----------------------------------------
    def model_traffic(self, name: str) -> dict[str, Any]:
        """The effective traffic policy of a model's unversioned requests."""
        policy, source, ready = self._models.traffic(name)
        return {"name": name, "ready_versions": [str(v) for v in ready], "source": source, **policy.to_json()}

    def set_model_traffic(self, name: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a traffic request: {"weights": {"1": 90, "2": 10} | null, "pin": "1" | null}.

        A key that is absent is left alone; null clears the API setting (the config's applies again).
        """
        unknown = sorted(set(doc) - {"weights", "pin"})
        if unknown:
            raise InvalidInput(f"unexpected traffic setting(s) {unknown}; expected 'weights' and/or 'pin'")
        weights: object = ...
        pin: object = ...
        if "weights" in doc:
            weights = None if doc["weights"] is None else parse_weights(doc["weights"])
        if "pin" in doc:
            pin = None if doc["pin"] is None else parse_version_number(doc["pin"], "traffic pin")
        self._models.set_traffic(name, weights=weights, pin=pin)
        return self.model_traffic(name)

    # --- inference -----------------------------------------------------------------------
    def acquire(self, name: str, version: str = "", *, internal: bool = False) -> ModelHandle:
        """Resolve the version that serves one inference request, once; it counts in flight until released.

        Unversioned requests are routed by the model's traffic policy here. `internal` marks a
        request made inside the server on behalf of one already admitted (an ensemble step): it
        is admitted while the server drains, so the request it belongs to can finish.
        """
        if self._draining and not internal:
            raise ModelUnavailable("Server exiting")
        return self._models.acquire(name, version)

    async def acquire_loaded(self, name: str, version: str = "", *, internal: bool = False) -> ModelHandle:
        """`acquire`, and with --load-on-demand, a model in the repository that is not loaded loads first."""
        if self._on_demand is None or (self._draining and not internal):
            return self.acquire(name, version, internal=internal)  # (refuses while draining)
        return await self._on_demand.acquire(name, version)

    async def make_resident(self, name: str, version: str = "") -> None:
        """With --load-on-demand, load a model in the repository that is not loaded (metadata, config)."""
        if self._on_demand is not None:
            await self._on_demand.ensure(name, version)

    async def infer(
        self,
        request: InferRequest,
        handle: ModelHandle | None = None,
        traceparent: str | None = None,
        endpoint: str = "HTTP end point",
        *,
        internal: bool = False,
    ) -> InferResponse:
        """Validate, schedule and run one request; build its response from the model's outputs.

        `handle` is the version the caller resolved (and decoded the request against) with
        `acquire`; the caller releases it. Without one, the request's model and version are
        resolved here. `traceparent` is the client's W3C trace context (frontends pass it only
        when `self.tracing.active`). `endpoint` names the caller in the error for decoupled
        models, which only `infer_stream` serves.
        """
        bind_request_id(request.id)
        try:
            if handle is not None:
                return await self._run(request, handle.model, traceparent, endpoint)
            own = await self.acquire_loaded(request.model_name, request.model_version, internal=internal)
            with own:
                return await self._run(request, own.model, traceparent, endpoint)
        finally:
            if request.input_regions is not None:  # its shared-memory inputs are read: let them go
                request.input_regions.release()

    async def _run(
        self, request: InferRequest, model: ServedModel, traceparent: str | None, endpoint: str
    ) -> InferResponse:
        if model.spec.decoupled:
            raise Unsupported(f"{endpoint} doesn't support models with decoupled transaction policy")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("inference request for model '%s' version %d", model.name, model.version)
        normalize_request(request, model.spec)
        regions = output_regions(self.shared_memory, request) if request.outputs else None
        trace = (
            self.tracing.begin(model.name, str(model.version), request.id, traceparent)
            if self.tracing.active
            else None
        )
        try:
            if trace is not None:
                request.trace = trace
                trace.queued()
            outputs = await model.scheduler.submit(request)
            response = _build_response(request, model, outputs)
            if regions:
                write_output_regions(self.shared_memory, response, regions)
        except BaseException as exc:
            if trace is not None:
                trace.finish(exc)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("inference on model '%s' version %d failed: %s", model.name, model.version, exc)
            raise
        if trace is not None:
            trace.finish()
        return response

    async def infer_stream(
        self, request: InferRequest, empty_final_response: bool = False, handle: ModelHandle | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """Run one request and yield its responses: exactly one for most models, 0..n for decoupled ones.

        Each StreamItem carries a response or an error, and whether it is the request's last.
        Errors found before the request runs (unknown model, invalid input) are raised.
        `empty_final_response` (triton_enable_empty_final_response) adds an empty last response
        when a decoupled model ends a request without data. `handle` is the version the caller
        resolved (and decoded the request against) with `acquire`; the caller releases it.
        Closing the iterator early cancels the request (a decoupled model sees is_cancelled()).
        """
        bind_request_id(request.id)
        try:
            resolved = (
                contextlib.nullcontext(handle)
                if handle is not None
                else await self.acquire_loaded(request.model_name, request.model_version)
            )
            with resolved as chosen:
                model = chosen.model
                if not model.spec.decoupled:
                    yield StreamItem(await self._run(request, model, None, "HTTP end point"), True)
                    return
                normalize_request(request, model.spec)
                items = stream_decoupled(request, model, empty_final_response)
                async with contextlib.aclosing(items):
                    async for item in items:
                        yield item
        finally:
            if request.input_regions is not None:
                request.input_regions.release()


def _build_response(
    request: InferRequest, model: ServedModel, outputs: dict[str, np.ndarray]
) -> InferResponse:
    spec = model.spec
    wanted = request.outputs
    response = InferResponse(model_name=spec.name, model_version=str(model.version), id=request.id)
    names = [o.name for o in wanted] if wanted else [t.name for t in spec.outputs]
    classification = {o.name: o.classification for o in wanted if o.classification > 0} if wanted else {}
    batched = spec.max_batch_size > 0
    for name in names:
        tensor = spec.output(name)
        assert tensor is not None
        data = outputs.get(name)
        if data is None:
            raise InternalError(f"model '{spec.name}' did not produce output '{name}'")
        if type(data) is not np.ndarray:
            data = np.asarray(data)
        if tensor.reshape is not None and tensor.dims.count(-1) <= 1:
            data = data.reshape((data.shape[0], *tensor.dims) if batched else tensor.dims)
        dtype_name = datatype.from_numpy(data.dtype).name
        k = classification.get(name, 0) if classification else 0
        if k:
            data = classify(data, dtype_name, k, model.labels.get(name), batched)
            dtype_name = "BYTES"
        response.outputs.append(InferOutput(name, dtype_name, tuple(data.shape), data))
    return response

