"""Registers GRPCInferenceService with its generated method handlers wrapped, once, at start.

Two things grpc.aio does not do for us:
* A request that is not a valid protobuf message of its RPC's type failed inside grpc's own
  deserialisation, answered UNKNOWN "Unexpected DecodeError". The deserializer here turns it into
  a value the handler answers with INVALID_ARGUMENT.
* A call that ends with `context.abort()` leaves the AbortError in grpc's per-call state. Its
  traceback and context (the error that caused it) hold the handlers' frames, and through them
  the request and its tensors (100 MiB for a large rejected request), in a reference cycle with
  the servicer context: nothing was freed until the garbage collector ran, and the last call's
  state was kept until the next call. The AbortError is cut loose from those frames here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from modelport.protocol import service_pb2_grpc

log = logging.getLogger(__name__)

_Deserializer = Callable[[bytes], Any]


class Malformed:
    """What the deserializer returns for bytes that do not parse: the error to answer with."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def tolerant(deserializer: _Deserializer | None) -> _Deserializer | None:
    """`deserializer`, returning a Malformed value instead of raising for an unparseable message."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(f"failed to parse the request protobuf message: {exc}")

    return deserialize


def released(error: grpc.aio.AbortError) -> grpc.aio.AbortError:
    """`error` without the traceback and context that hold the aborted handler's frames."""
    error.__context__ = None
    error.__cause__ = None
    error.__traceback__ = None
    return error


def wrap_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError as exc:
            aborted = exc
        del request, context  # this frame ends up in the new traceback: it must not hold them
        raise released(aborted)

    return handle


def wrap_stream(
    behavior: Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]],
) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # grpc.aio runs an async generator function's responses; a plain function is taken as sync.
        async for response in behavior(_checked(requests, context), context):
            yield response

    return handle


async def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    """The requests of a stream; one that does not parse ends the stream with INVALID_ARGUMENT."""
    async for message in requests:
        if isinstance(message, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message.message)
        yield message


def wrapped(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same RPC, with the tolerant deserializer and the wrapped behaviour."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary),
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(handler.stream_stream),
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


class _Registrations:
    """Stands in for the server while the generated code registers the service's handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: Mapping[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        pass  # the same handlers come through add_registered_method_handlers

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self.service, self.handlers = service, handlers


def inference_handlers(servicer: Any) -> tuple[str, dict[str, grpc.RpcMethodHandler]]:
    """GRPCInferenceService's full name and its method handlers by method name, each wrapped; no
    handlers when the generated code is too old to hand them over."""
    found = _Registrations()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, found)
    return found.service, {name: wrapped(handler) for name, handler in found.handlers.items()}


def add_inference_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Register GRPCInferenceService on `server` with every method handler wrapped."""
    service, handlers = inference_handlers(servicer)
    if not handlers:  # generated code from an older grpcio-tools: register it as it is
        log.warning("gRPC method handlers not found; malformed requests will be answered UNKNOWN")
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        return
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
