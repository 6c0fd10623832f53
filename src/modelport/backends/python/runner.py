"""ModelRunner: one `model.py` TritonPythonModel, driven the way Triton's Python backend drives it.

Used in both execution modes: on an instance thread of the server (in-thread) and inside the
isolated model process (process mode). It loads the module, calls initialize / execute /
finalize, runs `async def execute` on a private event loop, checks what execute returns, and turns
responses into per-request outputs or errors. Where decoupled responses go is the caller's
ResponseChannel.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

import triton_python_backend_utils as pb_utils
from modelport.errors import ErrorCode, InternalError, ModelportError
from modelport.observability.redaction import model_repository_of, repository_path, scrub_paths

log = logging.getLogger(__name__)

# One request's result: its outputs by name, or its error.
Result = dict[str, np.ndarray] | ModelportError

_CODES = {
    pb_utils.TritonError.UNKNOWN: ErrorCode.UNKNOWN,
    pb_utils.TritonError.INTERNAL: ErrorCode.INTERNAL,
    pb_utils.TritonError.NOT_FOUND: ErrorCode.NOT_FOUND,
    pb_utils.TritonError.INVALID_ARG: ErrorCode.INVALID_ARG,
    pb_utils.TritonError.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    pb_utils.TritonError.UNSUPPORTED: ErrorCode.UNSUPPORTED,
    pb_utils.TritonError.ALREADY_EXISTS: ErrorCode.ALREADY_EXISTS,
    pb_utils.TritonError.CANCELLED: ErrorCode.CANCELLED,
}
_TRITON_CODES = {code: value for value, code in _CODES.items()}
_MAX_FRAMES = 12


def error_from_triton(error: pb_utils.TritonError) -> ModelportError:
    return ModelportError(error.message(), _CODES.get(error.code(), ErrorCode.INTERNAL))


def triton_error(error: ModelportError) -> pb_utils.TritonError:
    return pb_utils.TritonError(error.message, _TRITON_CODES.get(error.code, pb_utils.TritonError.INTERNAL))


def response_result(response: pb_utils.InferenceResponse) -> Result:
    """A model's response as outputs by name, or as the error it carries."""
    error = response.error()
    if error is not None:
        return error_from_triton(error)
    return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}


def failure(instance_name: str, detail: str) -> InternalError:
    """Triton's message for a failed execute."""
    return InternalError(
        f"Failed to process the request(s) for model instance '{instance_name}', message: {detail}"
    )


def describe_exception(exc: BaseException, model_file: Path, tb: TracebackType | None = None) -> str:
    """`Type: message` and the model's frames, innermost first, the way Triton's stub prints them.

    This is what the client sees: files are named relative to the model repository. The full
    traceback, absolute paths included, goes to the server log.
    """
    tb = tb if tb is not None else exc.__traceback__
    repository = model_repository_of(model_file)
    log.error(
        "python model '%s' raised %s",
        repository_path(model_file, repository),
        type(exc).__name__,
        exc_info=(type(exc), exc, tb),
    )
    text = scrub_paths(f"{type(exc).__name__}: {exc}", repository)
    frames = traceback.extract_tb(tb)
    model_frames = [f for f in frames if not f.filename.startswith(_OWN_DIR)][-_MAX_FRAMES:]
    if model_frames:
        shown = [(repository_path(f.filename, repository), f.lineno, f.name) for f in reversed(model_frames)]
        lines = "".join(f"  {file}({line}): {name}\n" for file, line, name in shown)
        text += f"\n\nAt:\n{lines}"
    return text


_OWN_DIR = str(Path(__file__).parent)


class ResponseChannel:
    """The responses of one request of a decoupled model; subclasses deliver them somewhere.

    A channel the model drops without sending the FINAL flag ends its request when it is collected,
    so a client never waits forever on a forgotten response sender.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def send(self, response: pb_utils.InferenceResponse | None, flags: int) -> None:
        final = bool(flags & pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        with self._lock:
            if self._closed:
                raise pb_utils.TritonModelException(
                    "Unable to send response. Response sender has been closed."
                )
            self._closed = final
        self._deliver(None if response is None else response_result(response), final)

    def fail(self, error: ModelportError) -> None:
        """End the request with `error` unless the model already ended it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._deliver(error, True)

    @property
    def closed(self) -> bool:
        return self._closed

    def is_cancelled(self) -> bool:
        return False

    def _deliver(self, result: Result | None, final: bool) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # interpreter shutdown or a closed pipe: nobody to tell
                self._deliver(None, True)


def load_model_module(model_file: Path, module_name: str) -> ModuleType:
    """Import `model.py` as its own module; its version and model folders join sys.path as in Triton."""
    for folder in (str(model_file.parent), str(model_file.parent.parent)):
        if folder not in sys.path:
            sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(module_name, model_file)
    if spec is None or spec.loader is None:
        raise InternalError(f"unable to import '{_shown(model_file)}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise InternalError(describe_exception(exc, model_file)) from None
    return module


def model_class(module: ModuleType, model_file: Path) -> type:
    cls = getattr(module, "TritonPythonModel", None)
    if not isinstance(cls, type):
        raise InternalError(f"'{_shown(model_file)}' does not define a class named TritonPythonModel")
    if not callable(getattr(cls, "execute", None)):
        raise InternalError(f"TritonPythonModel in '{_shown(model_file)}' has no execute method")
    return cls


def _shown(model_file: Path) -> str:
    return repository_path(model_file, model_repository_of(model_file))


class ModelRunner:
    """Runs one instance of a TritonPythonModel."""

    def __init__(
        self,
        model_file: Path,
        module_name: str,
        args: dict[str, str],
        *,
        decoupled: bool,
        runtime: Any,
    ) -> None:
        self._model_file = model_file
        self._module_name = module_name
        self._args = args
        self._decoupled = decoupled
        self._runtime = runtime
        self.instance_name = args["model_instance_name"]
        self._module = load_model_module(model_file, module_name)
        cls = model_class(self._module, model_file)
        self._model = self._call(cls)
        self._is_async = inspect.iscoroutinefunction(self._model.execute)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def initialize(self) -> None:
        initialize = getattr(self._model, "initialize", None)
        if initialize is None:
            return
        try:
            self._complete(self._call(initialize, dict(self._args)))
        except BaseException as exc:
            raise InternalError(describe_exception(exc, self._model_file)) from None

    def finalize(self) -> None:
        try:
            finalize = getattr(self._model, "finalize", None)
            if finalize is not None:
                self._complete(self._call(finalize))
        finally:
            self._stop_loop()
            sys.modules.pop(self._module_name, None)

    # --- execution -----------------------------------------------------------------------
    def execute(
        self, requests: Sequence[pb_utils.InferenceRequest], channels: Sequence[ResponseChannel] = ()
    ) -> list[Result]:
        """Run one batch; one result per request. Decoupled models answer through `channels`."""
        if self._decoupled:
            return self._execute_decoupled(requests, channels)
        try:
            returned = self._complete(self._call(self._model.execute, list(requests)))
        except BaseException as exc:
            error = failure(self.instance_name, describe_exception(exc, self._model_file))
            return [error] * len(requests)
        return self._results(returned, len(requests))

    def _execute_decoupled(
        self, requests: Sequence[pb_utils.InferenceRequest], channels: Sequence[ResponseChannel]
    ) -> list[Result]:
        def fail_open(error: ModelportError) -> None:
            for channel in channels:
                channel.fail(error)

        if self._is_async:
            future = self._submit(self._model.execute(list(requests)))
            future.add_done_callback(lambda f: self._after_async_decoupled(f, fail_open))
            return [{} for _ in requests]
        try:
            returned = self._call(self._model.execute, list(requests))
        except BaseException as exc:
            fail_open(failure(self.instance_name, describe_exception(exc, self._model_file)))
            return [{} for _ in requests]
        if returned is not None:
            fail_open(self._decoupled_return_error())
        return [{} for _ in requests]

    def _after_async_decoupled(
        self, future: Future[Any], fail_open: Callable[[ModelportError], None]
    ) -> None:
        exc = future.exception()
        if exc is not None:
            fail_open(failure(self.instance_name, describe_exception(exc, self._model_file)))
        elif future.result() is not None:
            fail_open(self._decoupled_return_error())

    def _decoupled_return_error(self) -> ModelportError:
        return failure(
            self.instance_name,
            f"Python model '{self.instance_name}' is using the decoupled mode and the execute function must "
            f"return None.",
        )

    def _results(self, returned: Any, count: int) -> list[Result]:
        if not isinstance(returned, (list, tuple)):
            error = failure(self.instance_name, "Expected a list in the execute return")
            return [error] * count
        if len(returned) != count:
            error = failure(
                self.instance_name,
                f"Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
                f"InferenceRequest(s) size is:{count}, and InferenceResponse(s) size is:{len(returned)}",
            )
            return [error] * count
        results: list[Result] = []
        for response in returned:
            if isinstance(response, pb_utils.InferenceResponse):
                results.append(response_result(response))
            else:
                results.append(
                    failure(
                        self.instance_name,
                        f"execute returned {type(response).__name__} instead of an InferenceResponse",
                    )
                )
        return results

    # --- helpers -------------------------------------------------------------------------
    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call model code with this instance's BLS runtime bound to the thread."""
        pb_utils._bind_runtime(self._runtime)
        try:
            return function(*args)
        finally:
            pb_utils._bind_runtime(None)

    def _complete(self, value: Any) -> Any:
        """Await a coroutine returned by model code on the instance's event loop."""
        if inspect.isawaitable(value):
            return self._submit(value).result()
        return value

    def _submit(self, awaitable: Any) -> Future[Any]:
        loop = self._ensure_loop()

        async def bound() -> Any:
            pb_utils._bind_runtime(self._runtime)
            return await awaitable

        return asyncio.run_coroutine_threadsafe(bound(), loop)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"{self.instance_name}-asyncio", daemon=True
            )
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    def _stop_loop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
        self._loop = self._loop_thread = None
