"""The model process of an isolated Python model instance (process mode).

`main` runs in a spawned child. Its main thread reads the server's messages; a worker thread runs
the model (initialize, then each execute, then finalize) with a ModelRunner. Inputs arrive in a
shared-memory segment and are handed to the model as numpy views; outputs go back through a
second segment. BLS calls and decoupled responses travel as messages over the same pipe.

Messages (tuples) from the server: ("execute", id, ExecuteBatch), ("bls_result", call, reply),
("bls_item", call, result, final), ("bls_end", call), ("finalize",).
To the server: ("ready", pid), ("init_error", text), ("result", id, results, needed_bytes),
("response", key, payload, final), ("bls", call, InferRequest, decoupled), ("bls_ready", call,
name, version), ("finalized",).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

import triton_python_backend_utils as pb_utils
from modelport.backends.python import shm_tensors
from modelport.backends.python.convert import bls_error, bls_request, bls_response
from modelport.backends.python.runner import (
    ModelRunner,
    ResponseChannel,
    Result,
    describe_exception,
    failure,
    model_class,
)
from modelport.backends.python.runtime import stream_responses
from modelport.errors import ErrorCode, ModelportError

_EMPTY_FINAL = "triton_enable_empty_final_response"


@dataclass(frozen=True, slots=True)
class RequestPayload:
    """One request of a batch, as the model process receives it."""

    key: int
    request_id: str
    requested_output_names: list[str]
    parameters: dict[str, Any]
    correlation_id: int | str
    flags: int
    inputs: list[shm_tensors.TensorRef]


@dataclass(frozen=True, slots=True)
class ExecuteBatch:
    input_segment: str
    output_segment: str
    requests: list[RequestPayload] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Boot:
    """What the model process needs to load its model."""

    model_file: str
    module_name: str
    args: dict[str, str]
    decoupled: bool
    model_name: str
    log_level: int
    log_formatter: type[logging.Formatter] | None = None  # the server's, so both logs read alike


def encode_error(error: ModelportError) -> tuple[str, str, str]:
    return ("error", error.code.value, error.message)


def decode_error(payload: tuple[str, str, str]) -> ModelportError:
    return ModelportError(payload[2], ErrorCode(payload[1]))


class ServerLink:
    """The pipe to the server: sends from any thread, and routes replies to the calls waiting for them."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._calls: dict[int, Callable[[Any], None]] = {}
        self._ids = itertools.count(1)

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)

    def call(self, build: Callable[[int], tuple[Any, ...]], on_reply: Callable[[Any], None]) -> None:
        call_id = next(self._ids)
        self._calls[call_id] = on_reply
        self.send(build(call_id))

    def reply(self, call_id: int, value: Any, done: bool) -> None:
        handler = self._calls.pop(call_id, None) if done else self._calls.get(call_id)
        if handler is not None:
            handler(value)


class PipeRuntime:
    """pb_utils' runtime hook in the model process: BLS requests go to the server over the pipe."""

    def __init__(self, link: ServerLink) -> None:
        self._link = link

    def exec(self, request: pb_utils.InferenceRequest, decoupled: bool) -> object:
        if decoupled:
            return self._stream(request)
        return self._unary(request).result()

    async def async_exec(self, request: pb_utils.InferenceRequest, decoupled: bool) -> object:
        import asyncio

        if decoupled:
            return self._stream(request)
        return await asyncio.wrap_future(self._unary(request))

    def is_model_ready(self, model_name: str, model_version: str) -> bool:
        future: Future[bool] = Future()
        self._link.call(lambda call: ("bls_ready", call, model_name, model_version), future.set_result)
        return future.result()

    def _unary(self, request: pb_utils.InferenceRequest) -> Future[pb_utils.InferenceResponse]:
        server_request = bls_request(request)
        future: Future[pb_utils.InferenceResponse] = Future()

        def on_reply(reply: Any) -> None:
            future.set_result(bls_response(reply[1]) if reply[0] == "ok" else bls_error(decode_error(reply)))

        self._link.call(lambda call: ("bls", call, server_request, False), on_reply)
        return future

    def _stream(self, request: pb_utils.InferenceRequest) -> Any:
        server_request = bls_request(request)
        server_request.parameters[_EMPTY_FINAL] = True
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def on_reply(reply: Any) -> None:
            if reply is None:
                results.put(None)
                return
            payload, final = reply
            results.put((payload[1] if payload[0] == "ok" else decode_error(payload), final))

        self._link.call(lambda call: ("bls", call, server_request, True), on_reply)
        return stream_responses(results)


class PipeChannel(ResponseChannel):
    """A decoupled request's responses, sent to the server as they are produced."""

    def __init__(self, link: ServerLink, key: int) -> None:
        super().__init__()
        self._link = link
        self._key = key

    def _deliver(self, result: Result | None, final: bool) -> None:
        if result is None:
            payload: Any = None
        elif isinstance(result, ModelportError):
            payload = encode_error(result)
        else:
            payload = ("ok", {name: np.asarray(array) for name, array in result.items()})
        self._link.send(("response", self._key, payload, final))


class ModelWorker:
    """Runs the model on its own thread, one message at a time."""

    def __init__(self, link: ServerLink, runtime: PipeRuntime, boot: Boot) -> None:
        self._link = link
        self._runtime = runtime
        self._boot = boot
        self._segments = shm_tensors.Attached()
        self._runner: ModelRunner | None = None
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def run(self) -> None:
        try:
            self._runner = ModelRunner(
                Path(self._boot.model_file),
                self._boot.module_name,
                self._boot.args,
                decoupled=self._boot.decoupled,
                runtime=self._runtime,
            )
            self._runner.initialize()
        except ModelportError as exc:
            self._link.send(("init_error", exc.message))
            _exit(0)
        except BaseException as exc:
            self._link.send(("init_error", describe_exception(exc, Path(self._boot.model_file))))
            _exit(0)
        self._link.send(("ready", os.getpid()))
        while True:
            message = self.inbox.get()
            if message[0] == "execute":
                try:
                    self._execute(message[1], message[2])
                except BaseException as exc:  # never leave the server waiting for a result
                    name = self._boot.args["model_instance_name"]
                    error = encode_error(failure(name, describe_exception(exc, Path(self._boot.model_file))))
                    self._link.send(("result", message[1], [error] * len(message[2].requests), 0))
            elif message[0] == "finalize":
                self._finalize()

    def _execute(self, exec_id: int, batch: ExecuteBatch) -> None:
        assert self._runner is not None
        inputs = self._segments.get(batch.input_segment)
        outputs = self._segments.get(batch.output_segment)
        self._segments.keep_only({batch.input_segment, batch.output_segment})
        decoupled = self._boot.decoupled
        requests, channels = [], []
        for item in batch.requests:
            tensors = []
            for ref in item.inputs:
                array = shm_tensors.view(inputs, ref)
                # A decoupled model may keep using its inputs after execute returns; the segment won't wait.
                tensors.append(pb_utils.Tensor(ref.name, array.copy() if decoupled else array))
            channel = PipeChannel(self._link, item.key) if decoupled else None
            if channel is not None:
                channels.append(channel)
            requests.append(
                pb_utils.InferenceRequest._from_server(
                    model_name=self._boot.model_name,
                    model_version=int(self._boot.args["model_version"]),
                    request_id=item.request_id,
                    inputs=tensors,
                    requested_output_names=item.requested_output_names,
                    parameters=item.parameters,
                    correlation_id=item.correlation_id,
                    flags=item.flags,
                    channel=channel,
                )
            )
        results = self._runner.execute(requests, channels)
        del requests, channels
        encoded, needed = self._encode(results, outputs)
        self._link.send(("result", exec_id, encoded, needed))

    def _encode(self, results: list[Result], segment: Any) -> tuple[list[Any], int]:
        arrays = [a for r in results if isinstance(r, dict) for a in r.values()]
        needed = shm_tensors.segment_bytes([np.asarray(a) for a in arrays])
        target = segment if needed <= segment.size else None
        encoded: list[Any] = []
        offset = 0
        for result in results:
            if isinstance(result, ModelportError):
                encoded.append(encode_error(result))
                continue
            refs, offset = shm_tensors.write(target, [(n, np.asarray(a)) for n, a in result.items()], offset)
            encoded.append(("ok", refs))
        return encoded, needed

    def _finalize(self) -> None:
        try:
            if self._runner is not None:
                self._runner.finalize()
        except BaseException:
            logging.getLogger("modelport.python_model").exception("finalize failed")
        self._link.send(("finalized",))
        _exit(0)


def main(conn: Connection, boot: Boot) -> None:
    """Entry point of the model process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when this process ends
    _configure_logging(boot)
    link = ServerLink(conn)
    runtime = PipeRuntime(link)
    pb_utils._set_process_runtime(runtime)
    worker = ModelWorker(link, runtime, boot)
    threading.Thread(target=worker.run, name="model", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server went away: nothing left to serve
            _exit(0)
        kind = message[0]
        if kind in ("execute", "finalize"):
            worker.inbox.put(message)
        elif kind == "bls_result":
            link.reply(message[1], message[2], done=True)
        elif kind == "bls_item":
            link.reply(message[1], (message[2], message[3]), done=False)
        elif kind == "bls_end":
            link.reply(message[1], None, done=True)


def _configure_logging(boot: Boot) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = boot.log_formatter() if boot.log_formatter is not None else None
    handler.setFormatter(formatter or logging.Formatter("%(levelname)s %(process)d %(name)s] %(message)s"))
    logger = logging.getLogger("modelport")
    logger.handlers[:] = [handler]
    logger.setLevel(boot.log_level)
    logger.propagate = False


def auto_complete_main(conn: Connection, model_file: str, module_name: str, config_json: str) -> None:
    """One-shot child: run the model's auto_complete_config on `config_json`; reply with the new config."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from modelport.backends.python.runner import load_model_module

        module = load_model_module(Path(model_file), module_name)
        hook = getattr(model_class(module, Path(model_file)), "auto_complete_config", None)
        if hook is None:
            conn.send(("ok", None))
        else:
            result = hook(pb_utils.ModelConfig(config_json))
            if not isinstance(result, pb_utils.ModelConfig):
                conn.send(("error", "auto_complete_config must return the pb_utils.ModelConfig it was given"))
            else:
                conn.send(("ok", json.dumps(result.as_dict())))
    except ModelportError as exc:
        conn.send(("error", exc.message))
    except BaseException as exc:
        conn.send(("error", describe_exception(exc, Path(model_file))))
    finally:
        conn.close()


def _exit(code: int) -> None:
    """Leave now: model threads must not keep the process alive, and nothing else needs cleaning."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
