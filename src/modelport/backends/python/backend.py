"""Python backend: serves `model.py` files written for Triton's Python backend (TritonPythonModel).

Execution mode, per model, from config `parameters`:

    parameters { key: "MODELPORT_ISOLATION" value { string_value: "process" } }

* "thread" (default): the model runs in the server process, on its instance thread; tensors are
  numpy views, nothing is copied or serialised.
* "process": each instance runs in its own process (tensors through shared memory); a crash
  fails the running requests, the process is restarted and the server keeps serving.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
from pathlib import Path

from google.protobuf import json_format

import triton_python_backend_utils as pb_utils
from modelport.backends.base import InstancePlacement, ModelInstance
from modelport.backends.caller import InferenceCaller
from modelport.backends.devices import visible_gpu_count
from modelport.backends.python import stub
from modelport.backends.python.inthread import InThreadPythonInstance
from modelport.backends.python.process import _CONTEXT, ProcessPythonInstance
from modelport.backends.python.runner import describe_exception, load_model_module, model_class
from modelport.backends.python.runtime import ServerRuntime
from modelport.config.model_config import to_json_dict
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.errors import InternalError, InvalidInput
from modelport.observability.redaction import model_repository_of, repository_path
from modelport.protocol import ModelConfigProto

log = logging.getLogger(__name__)

ISOLATION_KEY = "MODELPORT_ISOLATION"
THREAD, PROCESS = "thread", "process"
_AUTO_COMPLETE_TIMEOUT_S = 120.0


def isolation_mode(parameters: dict[str, str], model_name: str) -> str:
    value = parameters.get(ISOLATION_KEY, THREAD).strip().lower() or THREAD
    if value not in (THREAD, PROCESS):
        raise InvalidInput(
            f"model '{model_name}': parameter {ISOLATION_KEY} must be '{THREAD}' or '{PROCESS}', not "
            f"'{value}'"
        )
    return value


class PythonBackend:
    """Serves `model.py` with the TritonPythonModel interface."""

    name = "python"

    def __init__(self, caller: InferenceCaller | None = None) -> None:
        self._caller = caller
        self._runtime = ServerRuntime(caller)
        self._modules = itertools.count(1)

    def usable_gpus(self) -> int:
        """The visible GPUs: a Python model is told its device and decides what to do with it."""
        return visible_gpu_count()

    # --- auto-complete -------------------------------------------------------------------
    def auto_complete(self, config: ModelConfigProto, model_path: Path, settings: ServerSettings) -> None:
        """Let the model's `auto_complete_config` staticmethod fill the config, as Triton does."""
        parameters = {k: v.string_value for k, v in config.parameters.items()}
        module_name = self._module_name(config.name, "autocomplete")
        config_json = json.dumps(to_json_dict(config))
        if isolation_mode(parameters, config.name) == PROCESS:
            completed = _auto_complete_in_child(model_path, module_name, config_json)
        else:
            completed = _auto_complete_here(model_path, module_name, config_json)
        if completed is None:
            return
        updated = ModelConfigProto()
        try:
            json_format.ParseDict(completed, updated)
        except (json_format.ParseError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"auto_complete_config of model '{config.name}' returned an invalid configuration: {exc}"
            ) from None
        config.CopyFrom(updated)

    # --- instances -----------------------------------------------------------------------
    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> ModelInstance:
        args = initialize_args(spec, model_path, placement)
        module_name = self._module_name(spec.name, placement.name)
        mode = isolation_mode(spec.parameters, spec.name)
        if "EXECUTION_ENV_PATH" in spec.parameters:
            log.warning(
                "model '%s': EXECUTION_ENV_PATH is ignored; the model runs with the server's Python "
                "environment",
                spec.name,
            )
        if mode == PROCESS:
            boot = stub.Boot(
                model_file=str(model_path),
                module_name=module_name,
                args=args,
                decoupled=spec.decoupled,
                model_name=spec.name,
                log_level=logging.getLogger("modelport").getEffectiveLevel(),
                log_formatter=_server_log_formatter(),
            )
            return ProcessPythonInstance(spec, boot, self._caller)
        pb_utils._set_process_runtime(self._runtime)
        return InThreadPythonInstance(spec, model_path, module_name, args, self._runtime)

    def _module_name(self, model: str, suffix: str) -> str:
        safe = re.sub(r"\W", "_", f"{model}_{suffix}")
        return f"modelport_python_models.{safe}_{next(self._modules)}"


def _server_log_formatter() -> type[logging.Formatter] | None:
    for handler in logging.getLogger("modelport").handlers:
        if handler.formatter is not None:
            return type(handler.formatter)
    return None


def initialize_args(spec: ModelSpec, model_path: Path, placement: InstancePlacement) -> dict[str, str]:
    """The `args` dict a TritonPythonModel's initialize receives (all values are strings)."""
    kind = (
        "MODEL"
        if placement.group.kind == "KIND_MODEL"
        else ("GPU" if placement.device_id is not None else "CPU")
    )
    return {
        "model_config": json.dumps(to_json_dict(spec.proto)),
        "model_instance_kind": kind,
        "model_instance_name": placement.name,
        "model_instance_device_id": str(placement.device_id or 0),
        "model_repository": str(model_path.parent.parent),
        "model_version": model_path.parent.name,
        "model_name": spec.name,
    }


def _auto_complete_here(model_path: Path, module_name: str, config_json: str) -> dict[str, object] | None:
    module = load_model_module(model_path, module_name)
    try:
        hook = getattr(model_class(module, model_path), "auto_complete_config", None)
        if hook is None:
            return None
        try:
            result = hook(pb_utils.ModelConfig(config_json))
        except BaseException as exc:
            raise InternalError(describe_exception(exc, model_path)) from None
        if not isinstance(result, pb_utils.ModelConfig):
            raise InvalidInput("auto_complete_config must return the pb_utils.ModelConfig it was given")
        return result.as_dict()
    finally:
        sys.modules.pop(module_name, None)


def _auto_complete_in_child(model_path: Path, module_name: str, config_json: str) -> dict[str, object] | None:
    """Run auto_complete_config in a short-lived process, so an isolated model never loads in the server."""
    parent_end, child_end = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=stub.auto_complete_main,
        args=(child_end, str(model_path), module_name, config_json),
        name="modelport-autocomplete",
    )
    process.start()
    child_end.close()
    shown = repository_path(model_path, model_repository_of(model_path))
    try:
        if not parent_end.poll(_AUTO_COMPLETE_TIMEOUT_S):
            raise InternalError(
                f"auto_complete_config of '{shown}' did not finish in {_AUTO_COMPLETE_TIMEOUT_S}s"
            )
        try:
            status, value = parent_end.recv()
        except EOFError:
            process.join(timeout=5)
            raise InternalError(
                f"the process running auto_complete_config of '{shown}' exited (exit code {process.exitcode})"
            ) from None
    finally:
        parent_end.close()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    if status != "ok":
        raise InternalError(str(value))
    return None if value is None else dict(json.loads(value))
