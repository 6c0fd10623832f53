"""InferenceServer: the one facade every frontend calls (health, metadata, config, infer, repository)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport import __version__
from modelport.config.model_config import to_json_dict
from modelport.config.settings import ServerSettings
from modelport.core.classification import classify
from modelport.core.model import ServedModel
from modelport.core.normalize import normalize_request
from modelport.errors import InvalidInput, ModelNotFound, ModelUnavailable
from modelport.protocol import ModelConfigProto
from modelport.repository.lifecycle import IndexEntry
from modelport.repository.manager import ModelRepositoryManager
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
)


class InferenceServer:
    """Server-wide operations, independent of HTTP or gRPC."""

    def __init__(self, settings: ServerSettings, manager: ModelRepositoryManager) -> None:
        self.settings = settings
        self._manager = manager
        self._started = False
        self._exiting = False

    async def start(self) -> None:
        await self._manager.start()
        self._started = True

    async def stop(self) -> None:
        self._exiting = True
        await self._manager.stop()

    # --- health and metadata -------------------------------------------------------------
    def is_live(self) -> bool:
        return self._started and not self._exiting

    def is_ready(self) -> bool:
        if not self.is_live():
            return False
        return self._manager.all_ready() if self.settings.strict_readiness else True

    def is_model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._manager.acquire(name, version)
        except (ModelNotFound, ModelUnavailable):
            return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.settings.server_id, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        model = self._manager.acquire(name, version)
        spec = model.spec
        batch = [-1] if spec.max_batch_size > 0 else []
        return {
            "name": spec.name,
            "versions": [str(v) for v in self._manager.ready_versions(name)],
            "platform": spec.metadata_platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype.name, "shape": [*batch, *t.dims]} for t in spec.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype.name, "shape": [*batch, *t.dims]} for t in spec.outputs
            ],
        }

    def model_config(self, name: str, version: str = "") -> ModelConfigProto:
        return self._manager.acquire(name, version).spec.proto

    def model_config_json(self, name: str, version: str = "") -> dict[str, Any]:
        return to_json_dict(self.model_config(name, version))

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        """Triton's statistics JSON for one version, every READY version of a model, or all models."""
        if not name:
            served = self._manager.served_versions()
        elif version:
            try:
                served = [self._manager.acquire(name, version)]
            except (ModelNotFound, ModelUnavailable):
                raise InvalidInput(f"requested model version is not available for model '{name}'") from None
        else:
            served = self._manager.served_versions(name)
            if not served:
                raise InvalidInput(f"requested model '{name}' is not available")
        return {"model_stats": [m.stats.to_json(m.name, str(m.version)) for m in served]}

    # --- repository ----------------------------------------------------------------------
    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self._manager.index(ready_only)

    async def load_model(self, name: str) -> None:
        self._manager.refuse_repository_change()

    async def unload_model(self, name: str) -> None:
        self._manager.refuse_repository_change()

    # --- inference -----------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate, schedule and run one request; build its response from the model's outputs."""
        if self._exiting:
            raise ModelUnavailable("Server exiting")
        model = self._manager.acquire(request.model_name, request.model_version)
        normalize_request(request, model.spec)
        model.inflight += 1
        try:
            outputs = await model.scheduler.submit(request)
        finally:
            model.inflight -= 1
        return _build_response(request, model, outputs)


def _build_response(request: InferRequest, model: ServedModel, outputs: dict[str, np.ndarray]) -> InferResponse:
    spec = model.spec
    wanted = request.outputs or None
    response = InferResponse(model_name=spec.name, model_version=str(model.version), id=request.id)
    names = [o.name for o in wanted] if wanted else [t.name for t in spec.outputs]
    classification = {o.name: o.classification for o in wanted or [] if o.classification > 0}
    batched = spec.max_batch_size > 0
    for name in names:
        tensor = spec.output(name)
        assert tensor is not None
        data = outputs.get(name)
        if data is None:
            raise InvalidInput(f"model '{spec.name}' did not produce output '{name}'")
        data = np.asarray(data)
        if tensor.reshape is not None and tensor.dims.count(-1) <= 1:
            data = data.reshape((data.shape[0], *tensor.dims) if batched else tensor.dims)
        dtype_name = datatype.from_numpy(data.dtype).name
        k = classification.get(name, 0)
        if k:
            data = classify(data, dtype_name, k, model.labels.get(name), batched)
            dtype_name = "BYTES"
        response.outputs.append(InferOutput(name, dtype_name, tuple(data.shape), data))
    return response

