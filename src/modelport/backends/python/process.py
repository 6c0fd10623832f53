"""ProcessPythonInstance: a Python model instance isolated in its own process (opt-in per model).

The server side of `stub.py`. Inputs are written into a shared-memory segment the model process
reads as numpy views; outputs come back through a second segment. A reader thread handles every
message from the model process (results, decoupled responses, BLS calls). When the model process
dies (a segfault, os._exit, the OOM killer) the requests it was running fail with the reason, the
instance starts a new process, and the model stays READY; the server and other models never notice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from modelport.backends.base import ExecuteResult, Execution
from modelport.backends.caller import InferenceCaller
from modelport.backends.python import shm_tensors, stub
from modelport.backends.python.child import ModelProcess, ProcessCrashed, describe_exit
from modelport.backends.python.convert import sequence_flags, visible_parameters
from modelport.backends.python.runner import failure
from modelport.config.spec import ModelSpec
from modelport.errors import InternalError, ModelportError, ModelUnavailable
from modelport.observability.stats import ExecutionTiming
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # initialize() may load large weights
FINALIZE_TIMEOUT_S = 30.0
_CONTEXT = multiprocessing.get_context("spawn")  # never fork a process that runs threads and an event loop


class ProcessPythonInstance:
    """One model instance whose model.py runs in a child process."""

    def __init__(self, spec: ModelSpec, boot: stub.Boot, caller: InferenceCaller | None) -> None:
        self._spec = spec
        self._boot = boot
        self._caller = caller
        self._name = boot.args["model_instance_name"]
        self._outputs = list(spec.model_output_names)
        self._decoupled = spec.decoupled
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._restarting: threading.Thread | None = None
        self._restart_error = ""
        self._inputs = shm_tensors.create(0)
        self._outputs_segment = shm_tensors.create(0)
        try:
            self._child = self._start()
        except BaseException:
            self._release_segments()
            raise

    # --- lifecycle -----------------------------------------------------------------------
    def _start(self) -> ModelProcess:
        parent_end, child_end = _CONTEXT.Pipe(duplex=True)
        process = _CONTEXT.Process(
            target=stub.main, args=(child_end, self._boot), name=f"modelport-{self._name}", daemon=False
        )
        process.start()
        child_end.close()
        child = ModelProcess(process, parent_end)
        child.reader = threading.Thread(
            target=self._read, args=(child,), name=f"{self._name}-reader", daemon=True
        )
        child.reader.start()
        try:
            pid = child.started.result(timeout=START_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            self._kill(child)
            raise InternalError(
                f"python model instance '{self._name}' did not finish initialize within "
                f"{START_TIMEOUT_S:.0f}s"
            ) from None
        except ModelportError:
            self._kill(child)
            raise
        log.info("python model instance '%s' runs in process %d", self._name, pid)
        return child

    def close(self) -> None:
        with self._lock:
            self._closing = True
            child = self._child
        restarting = self._restarting
        if restarting is not None:
            restarting.join(timeout=START_TIMEOUT_S)
            child = self._child
        if not child.dead:
            with contextlib.suppress(OSError, ValueError):
                child.send(("finalize",))
            child.process.join(timeout=FINALIZE_TIMEOUT_S)
        self._kill(child)
        self._fail_streams(child, ModelUnavailable(f"model '{self._spec.name}' is unloading"))
        self._release_segments()

    def abort(self) -> bool:
        """Kill the model process: a stuck execution fails at once, and no restart follows."""
        with self._lock:
            self._closing = True
            child = self._child
        if child.process.is_alive():
            child.process.kill()
        return True

    def _kill(self, child: ModelProcess) -> None:
        if child.process.is_alive():
            child.process.terminate()
            child.process.join(timeout=5)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(timeout=5)
        # The reader sees EOF now that the process is gone. Close the pipe only after it has stopped:
        # closing an fd another thread is reading lets the number be reused by the next instance's
        # pipe, and the old reader would then steal that instance's messages.
        if child.reader is not None and child.reader is not threading.current_thread():
            child.reader.join(timeout=5)
        with contextlib.suppress(OSError):
            child.conn.close()

    def _release_segments(self) -> None:
        shm_tensors.destroy(self._inputs)
        shm_tensors.destroy(self._outputs_segment)

    # --- execution -----------------------------------------------------------------------
    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        called = time.perf_counter_ns()
        try:
            child = self._running_child()  # may wait for a restart, which is no phase of this batch
        except ModelportError as exc:
            return Execution.whole_call([exc] * len(requests), called)
        start = time.perf_counter_ns()
        exec_id = next(self._ids)
        batch = self._write_batch(child, requests)
        future: Future[Any] = Future()
        with child.state_lock:
            if child.dead:  # it died between the check and now
                crash = child.crash or ModelUnavailable(f"python model instance '{self._name}' is restarting")
                return Execution.whole_call([crash] * len(requests), start)
            child.pending[exec_id] = future
        with contextlib.suppress(OSError, ValueError):  # if the process is gone, the reader fails the future
            child.send(("execute", exec_id, batch))
        sent = time.perf_counter_ns()
        try:
            encoded, needed = future.result()
        except ProcessCrashed as crash:
            return Execution.whole_call([crash.error] * len(requests), start)
        ran = time.perf_counter_ns()
        results = self._read_results(encoded)
        if needed > self._outputs_segment.size:
            self._grow_outputs(needed)
        return Execution(results, ExecutionTiming(sent - start, ran - sent, time.perf_counter_ns() - ran))

    def _running_child(self) -> ModelProcess:
        """The live model process; waits for a restart in progress, or starts one if the last one failed."""
        for attempt in range(2):
            with self._lock:
                if self._closing:
                    raise ModelUnavailable(f"model '{self._spec.name}' is unloading")
                child = self._child
                if not child.dead:
                    return child
                if attempt == 1 and self._restarting is None:
                    break  # the restart this request waited for failed
                restarting = self._restarting or self._begin_restart()
            restarting.join(timeout=START_TIMEOUT_S)
        raise ModelUnavailable(
            f"python model instance '{self._name}' could not restart its model process: {self._restart_error}"
        )

    def _begin_restart(self) -> threading.Thread:
        """Start the one restart thread (call with self._lock held)."""
        restart = threading.Thread(target=self._restart, name=f"{self._name}-restart", daemon=True)
        self._restarting = restart
        restart.start()
        return restart

    def _write_batch(self, child: ModelProcess, requests: Sequence[InferRequest]) -> stub.ExecuteBatch:
        arrays = [i.data for r in requests for i in r.inputs]
        needed = shm_tensors.segment_bytes(arrays)
        if needed > self._inputs.size:
            old, self._inputs = self._inputs, shm_tensors.create(max(needed, 2 * self._inputs.size))
            shm_tensors.destroy(old)
        payloads = []
        offset = 0
        for request in requests:
            refs, offset = shm_tensors.write(
                self._inputs, [(i.name, np.asarray(i.data)) for i in request.inputs], offset
            )
            key = next(self._ids)
            if self._decoupled and request.response_sink is not None:
                child.streams[key] = request.response_sink
            params = request.parameters
            payloads.append(
                stub.RequestPayload(
                    key=key,
                    request_id=request.id,
                    requested_output_names=[o.name for o in request.outputs] or list(self._outputs),
                    parameters=visible_parameters(params),
                    correlation_id=params.get("sequence_id", 0),
                    flags=sequence_flags(params),
                    inputs=refs,
                )
            )
        return stub.ExecuteBatch(self._inputs.name, self._outputs_segment.name, payloads)

    def _read_results(self, encoded: list[Any]) -> ExecuteResult:
        results: ExecuteResult = []
        for item in encoded:
            if item[0] == "error":
                results.append(stub.decode_error(item))
            else:
                results.append({ref.name: shm_tensors.copy(self._outputs_segment, ref) for ref in item[1]})
        return results

    def _grow_outputs(self, needed: int) -> None:
        old, self._outputs_segment = (
            self._outputs_segment,
            shm_tensors.create(max(needed, 2 * self._outputs_segment.size)),
        )
        shm_tensors.destroy(old)

    # --- messages from the model process (reader thread) --------------------------------
    def _read(self, child: ModelProcess) -> None:
        while True:
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._dispatch(child, message)
            except Exception:
                log.exception("python model instance '%s': bad message from the model process", self._name)
        self._on_exit(child)

    def _dispatch(self, child: ModelProcess, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "result":
            future = child.pending.pop(message[1], None)
            if future is not None:
                future.set_result((message[2], message[3]))
        elif kind == "response":
            self._on_response(child, message[1], message[2], message[3])
        elif kind == "bls":
            self._on_bls(child, message[1], message[2], message[3])
        elif kind == "bls_ready":
            ready = self._caller is not None and self._caller.is_model_ready(message[2], message[3])
            child.send(("bls_result", message[1], ready))
        elif kind == "ready":
            child.started.set_result(message[1])
        elif kind == "init_error":
            child.started.set_exception(InternalError(message[1]))

    def _on_response(self, child: ModelProcess, key: int, payload: Any, final: bool) -> None:
        sink = child.streams.pop(key, None) if final else child.streams.get(key)
        if sink is None:
            return
        if payload is None:
            sink.send(None, None, final)
        elif payload[0] == "error":
            sink.send(None, stub.decode_error(payload), final)
        else:
            sink.send(payload[1], None, final)

    def _on_bls(self, child: ModelProcess, call_id: int, request: InferRequest, decoupled: bool) -> None:
        def reply(message: tuple[Any, ...]) -> None:
            with contextlib.suppress(OSError, ValueError):
                child.send(message)

        if self._caller is None:
            message = "BLS is not available: this server was started without a core caller"
            error = stub.encode_error(ModelUnavailable(message))
            reply(("bls_item", call_id, error, True) if decoupled else ("bls_result", call_id, error))
            if decoupled:
                reply(("bls_end", call_id))
            return
        try:
            if decoupled:
                self._caller.stream(request, lambda item: reply(_stream_message(call_id, item)))
            else:
                self._caller.infer(request).add_done_callback(
                    lambda f: reply(("bls_result", call_id, _outcome(f)))
                )
        except ModelportError as exc:
            reply(("bls_result", call_id, stub.encode_error(exc)))

    def _on_exit(self, child: ModelProcess) -> None:
        child.process.join(timeout=5)
        reason = describe_exit(child.process.exitcode)
        error = failure(
            self._name,
            f"Stub process '{self._name}' is not healthy: the model process exited unexpectedly ({reason}); "
            f"the instance is restarting it",
        )
        with child.state_lock:
            child.dead, child.crash = True, error
            pending, child.pending = child.pending, {}
        if not child.started.done():
            child.started.set_exception(
                InternalError(
                    f"python model instance '{self._name}' process exited during initialize ({reason})"
                )
            )
        if child.started.exception() is not None:
            return  # it never served: whoever started it reports the failure
        with self._lock:
            closing = self._closing
            if not closing and self._restarting is None:
                self._begin_restart()  # before failing the running batch, so the next batch waits for it
        if closing:
            return
        log.error(
            "python model instance '%s': model process %d exited (%s); restarting",
            self._name,
            child.process.pid or -1,
            reason,
        )
        for future in pending.values():
            future.set_exception(ProcessCrashed(error))
        self._fail_streams(child, error)

    def _restart(self) -> None:
        child: ModelProcess | None = None
        try:
            child = self._start()
        except ModelportError as exc:
            self._restart_error = exc.message
            log.error("python model instance '%s' could not restart: %s", self._name, exc.message)
        with self._lock:
            if child is not None:
                self._child = child
            closing = self._closing
            self._restarting = None
        if child is not None and closing:
            self._kill(child)
        elif child is not None:
            log.info("python model instance '%s' restarted", self._name)

    def _fail_streams(self, child: ModelProcess, error: ModelportError) -> None:
        with child.state_lock:
            streams, child.streams = child.streams, {}
        for sink in streams.values():
            sink.send(None, error, True)


def _outcome(future: Future[Any]) -> Any:
    try:
        return ("ok", future.result())
    except ModelportError as exc:
        return stub.encode_error(exc)
    except Exception as exc:
        return stub.encode_error(InternalError(str(exc)))


def _stream_message(call_id: int, item: Any) -> tuple[Any, ...]:
    if item is None:
        return ("bls_end", call_id)
    result, final = item
    payload = stub.encode_error(result) if isinstance(result, ModelportError) else ("ok", result)
    return ("bls_item", call_id, payload, final)
