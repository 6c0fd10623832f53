"""InferenceServicer: one thin handler per GRPCInferenceService RPC, each calling the InferenceServer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import json_format

from modelport.codecs import DECODE_OFF_LOOP_BYTES, grpc_v2
from modelport.core.server import InferenceServer
from modelport.errors import InternalError, InvalidInput, ModelportError, Unsupported
from modelport.frontends.grpc.errors import grpc_code, internal_message, unary_errors
from modelport.observability.tracing import traceparent_from_metadata
from modelport.protocol import service_pb2 as pb
from modelport.protocol import service_pb2_grpc
from modelport.tensor.records import InferRequest

log = logging.getLogger(__name__)

# Requests of one stream that may be in flight at once; reading pauses (and the client is
# flow-controlled) beyond this.
STREAM_MAX_INFLIGHT = 256
# Triton's opt-in for ending a stream with the gRPC status of its first failed request.
STREAM_ERROR_HEADER = "triton_grpc_error"

_END = object()


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """inference.GRPCInferenceService backed by an InferenceServer."""

    def __init__(self, server: InferenceServer) -> None:
        self._server = server

    # --- health and metadata -------------------------------------------------------------
    @unary_errors
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self._server.is_live())

    @unary_errors
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._server.is_ready())

    @unary_errors
    async def ModelReady(self, request: Any, context: Any) -> Any:
        version = grpc_v2.model_version(request.version)
        return pb.ModelReadyResponse(ready=self._server.is_model_ready(request.name, version))

    @unary_errors
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        meta = self._server.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    @unary_errors
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._server.make_resident(request.name, grpc_v2.model_version(request.version))
        meta = self._server.model_metadata(request.name, grpc_v2.model_version(request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["inputs"]],
            outputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["outputs"]
            ],
        )

    @unary_errors
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        await self._server.make_resident(request.name, grpc_v2.model_version(request.version))
        config = self._server.model_config(request.name, grpc_v2.model_version(request.version))
        return pb.ModelConfigResponse(config=config)

    @unary_errors
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        doc = self._server.model_statistics(request.name, grpc_v2.model_version(request.version))
        # The statistics JSON uses the proto's field names, so it parses straight into the message.
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)

    # --- repository ----------------------------------------------------------------------
    @unary_errors
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        _no_repository_name(request.repository_name)
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=e.name, version=e.version, state=e.state.value if e.state else "", reason=e.reason)
                for e in self._server.repository_index(request.ready)
            ]
        )

    @unary_errors
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        _no_repository_name(request.repository_name)
        config: str | None = None
        files: dict[str, bytes] = {}
        for key, param in request.parameters.items():
            kind = param.WhichOneof("parameter_choice")
            if key == "config" and kind == "string_param":
                config = param.string_param
            elif key.startswith("file:") and kind == "bytes_param":
                files[key] = param.bytes_param  # raw bytes over gRPC (base64 only over HTTP)
            else:
                raise InternalError("unexpected error on creating Triton parameter")
        await self._server.load_model(request.model_name, config, files or None)
        return pb.RepositoryModelLoadResponse()

    @unary_errors
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        _no_repository_name(request.repository_name)
        dependents = False
        if "unload_dependents" in request.parameters:
            param = request.parameters["unload_dependents"]
            if param.WhichOneof("parameter_choice") != "bool_param":
                raise InvalidInput("'unload_dependents' must be a boolean")
            dependents = param.bool_param
        await self._server.unload_model(request.model_name, unload_dependents=dependents)
        return pb.RepositoryModelUnloadResponse()

    # --- shared memory -------------------------------------------------------------------
    @unary_errors
    async def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self._server.shared_memory.system_status(request.name):
            response.regions[region.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=region.name, key=region.key, offset=region.offset, byte_size=region.byte_size
                )
            )
        return response

    @unary_errors
    async def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        self._server.shared_memory.register_system(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    @unary_errors
    async def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        self._server.shared_memory.unregister_system(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @unary_errors
    async def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        response = pb.CudaSharedMemoryStatusResponse()
        for region in self._server.shared_memory.cuda_status(request.name):
            entry = response.regions[region.name]
            entry.name, entry.device_id, entry.byte_size = region.name, region.device_id, region.byte_size
        return response

    @unary_errors
    async def CudaSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        self._server.shared_memory.register_cuda(
            request.name, request.raw_handle, request.device_id, request.byte_size
        )
        return pb.CudaSharedMemoryRegisterResponse()

    @unary_errors
    async def CudaSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        self._server.shared_memory.unregister_cuda(request.name)
        return pb.CudaSharedMemoryUnregisterResponse()

    # --- trace and logging ---------------------------------------------------------------
    @unary_errors
    async def TraceSetting(self, request: Any, context: Any) -> Any:
        model = request.model_name
        if request.settings:
            # Every value is a repeated string; an empty one resets the setting (JSON null over HTTP).
            changes = {k: list(v.value) if v.value else None for k, v in request.settings.items()}
            doc = self._server.update_trace_settings(model, changes)
        else:
            doc = self._server.trace_settings(model)
        response = pb.TraceSettingResponse()
        for key, value in doc.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            response.settings[key].value.extend(str(v) for v in values)
        return response

    @unary_errors
    async def LogSettings(self, request: Any, context: Any) -> Any:
        if request.settings:
            changes: dict[str, Any] = {}
            for key, value in request.settings.items():
                kind = value.WhichOneof("parameter_choice")
                changes[key] = getattr(value, kind) if kind else None
            doc = self._server.update_log_settings(changes)
        else:
            doc = self._server.log_settings()
        response = pb.LogSettingsResponse()
        for key, value in doc.items():
            setting = response.settings[key]
            if isinstance(value, bool):
                setting.bool_param = value
            elif isinstance(value, int):
                setting.uint32_param = value
            else:
                setting.string_param = str(value)
        return response

    # --- inference -----------------------------------------------------------------------
    @unary_errors
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await self.infer_message(request, context.invocation_metadata())

    async def infer_message(self, msg: Any, metadata: Iterable[tuple[str, Any]] | None) -> Any:
        """ModelInfer's work on a parsed request and its invocation metadata; frontend workers' calls
        come here too. Raises ModelportError."""
        infer_request = await self._decode(msg)
        traceparent = traceparent_from_metadata(metadata) if self._server.tracing.active else None
        response = await self._server.infer(infer_request, None, traceparent, endpoint="ModelInfer RPC")
        return grpc_v2.encode_response(response)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Answer each request of the stream as it completes; a failed request does not end the stream."""
        end_on_error = _header(context, STREAM_ERROR_HEADER) == "true"
        results: asyncio.Queue[Any] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_MAX_INFLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def answer(msg: Any) -> None:
            try:
                async for result in self._stream_one(msg):
                    results.put_nowait(result)
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for msg in request_iterator:
                    await slots.acquire()
                    task = asyncio.create_task(answer(msg))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.gather(*pending)
            finally:
                results.put_nowait(_END)

        reader = asyncio.create_task(read())
        try:
            while (item := await results.get()) is not _END:
                response, code = item
                if code is not None and end_on_error:
                    await context.abort(code, response.error_message)
                yield response
            await reader  # surfaces a failure to read the request stream
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _decode(self, msg: Any) -> InferRequest:
        """A large message is decoded on a worker thread, so other calls keep being answered meanwhile."""
        regions = self._server.shared_memory.for_request()
        if sum(len(contents) for contents in msg.raw_input_contents) >= DECODE_OFF_LOOP_BYTES:
            request = await asyncio.to_thread(grpc_v2.decode_request, msg, regions)
        else:
            request = grpc_v2.decode_request(msg, regions)
        request.input_regions = regions
        return request

    async def _stream_one(self, msg: Any) -> AsyncIterator[tuple[Any, grpc.StatusCode | None]]:
        """The answers to one stream request: one, or 0..n for a decoupled model."""
        try:
            request = await self._decode(msg)
            empty_final = (
                msg.parameters[grpc_v2.EMPTY_FINAL_RESPONSE].bool_param
                if grpc_v2.EMPTY_FINAL_RESPONSE in msg.parameters
                else False
            )
            async for result, final in self._server.infer_stream(request, empty_final):
                if isinstance(result, ModelportError):
                    yield grpc_v2.encode_stream_error(msg.id, result.message), grpc_code(result.code)
                else:
                    yield grpc_v2.encode_stream_response(result, final), None
        except ModelportError as exc:
            yield grpc_v2.encode_stream_error(msg.id, exc.message), grpc_code(exc.code)
        except Exception as exc:
            log.exception("internal error in ModelStreamInfer")
            yield grpc_v2.encode_stream_error(msg.id, internal_message(exc)), grpc.StatusCode.INTERNAL


def _no_repository_name(name: str) -> None:
    if name:
        raise Unsupported("'repository_name' specification is not supported")


def _header(context: Any, key: str) -> str:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value).lower()
    return ""
