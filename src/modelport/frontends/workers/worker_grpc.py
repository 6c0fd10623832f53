"""A worker's gRPC side: grpc.aio on the public port, forwarding GRPCInferenceService calls as raw bytes.

ModelInfer, the hot call, goes over the link as one frame. Every other RPC, the streaming one
included, is passed through to the engine's own gRPC server on its private Unix socket, with the
client's metadata and deadline; its status, details and trailing metadata come back unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelport.config.settings import ServerSettings
from modelport.frontends.grpc.server import channel_options, listen_address, server_credentials
from modelport.frontends.workers.link import Kind, LinkClient, LinkError
from modelport.protocol import service_pb2

_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_ENGINE_GONE = "the inference engine is not reachable"

Metadata = tuple[tuple[str, Any], ...]


def _metadata(context: grpc.aio.ServicerContext) -> Metadata:
    return tuple((key, value) for key, value in context.invocation_metadata() or ())


def _end_with(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError) -> None:
    context.set_code(error.code())
    context.set_details(error.details() or "")
    trailing = error.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(tuple(trailing))


class ForwardingService:
    """The service's handlers: ModelInfer over the link, the rest through `channel` to the engine."""

    def __init__(self, link: LinkClient, channel: grpc.aio.Channel) -> None:
        self._link = link
        self._channel = channel

    def handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in _SERVICE.methods:
            path = f"/{_SERVICE.full_name}/{method.name}"
            if method.name == "ModelInfer":
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._infer)
            elif method.client_streaming or method.server_streaming:
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(self._stream(path))
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._unary(path))
        return grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers)

    async def _infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
        try:
            (code, details), body = await self._link.call(Kind.GRPC_INFER, _metadata(context), request)
        except LinkError:
            code, details, body = grpc.StatusCode.UNAVAILABLE.value[0], _ENGINE_GONE, b""
        if code:
            context.set_code(_CODES[code])
            context.set_details(details)
            return None
        return body if isinstance(body, bytes) else bytes(body)

    def _unary(self, path: str) -> Any:
        remote = self._channel.unary_unary(path)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
            call = remote(request, metadata=_metadata(context), timeout=context.time_remaining())
            try:
                response: bytes = await call
            except grpc.aio.AioRpcError as error:
                _end_with(context, error)
                return None
            trailing = await call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            return response

        return forward

    def _stream(self, path: str) -> Any:
        remote = self._channel.stream_stream(path)

        async def forward(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            call = remote(requests, metadata=_metadata(context), timeout=context.time_remaining())
            try:
                async for response in call:
                    yield response
                trailing = await call.trailing_metadata()
                if trailing:
                    context.set_trailing_metadata(tuple(trailing))
            except grpc.aio.AioRpcError as error:
                _end_with(context, error)
            finally:
                call.cancel()  # the client went away: the engine's side of the stream ends too

        return forward


def engine_channel(address: str, settings: ServerSettings) -> grpc.aio.Channel:
    """The channel to the engine's private gRPC server, with the public port's message limits."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", settings.grpc_max_receive_message_size),
            ("grpc.max_receive_message_length", settings.grpc_max_send_message_size),
            ("grpc.enable_http_proxy", 0),
        ],
    )


async def start_grpc(service: ForwardingService, settings: ServerSettings) -> grpc.aio.Server:
    """The public gRPC port, bound with SO_REUSEPORT beside the other workers; OSError when it cannot be."""
    options = [(key, 1 if key == "grpc.so_reuseport" else value) for key, value in channel_options(settings)]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((service.handler(),))
    address = listen_address(settings.grpc_address, settings.grpc_port)
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot bind {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot bind {address}")
    await server.start()
    return server
