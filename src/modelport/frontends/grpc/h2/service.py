"""The method table of the h2 stack: per request path, the servicer's wrapped handler, its message
parser and serializer, the protocol restriction and whether the call waits for the startup models.

The handlers are the ones grpc.aio serves (method_handlers.inference_handlers), so both stacks
answer alike: malformed protobuf is INVALID_ARGUMENT, restricted calls are refused with Triton's
UNAVAILABLE before anything else, and every call but ServerLive/ServerReady waits until the
startup models have loaded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelport.config.settings import ServerSettings
from modelport.core.server import InferenceServer
from modelport.frontends.grpc.method_handlers import inference_handlers
from modelport.frontends.grpc.servicer import InferenceServicer
from modelport.frontends.restrictions import GRPC_CATEGORIES, HeaderCheck, header_checks

_ALWAYS_ANSWERED = frozenset({"ServerLive", "ServerReady"})


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC of the service, ready to run."""

    name: str
    streaming: bool
    parse: Callable[[Any], Any]  # bytes-like -> request message, or a Malformed value
    serialize: Callable[[Any], bytes]
    unary: Callable[[Any, Any], Awaitable[Any]] | None
    stream: Callable[[AsyncIterator[Any], Any], AsyncGenerator[Any, None]] | None
    restriction: HeaderCheck | None
    gated: bool  # waits for the startup models


class Service:
    """GRPCInferenceService's methods by request path, for `server`."""

    def __init__(self, server: InferenceServer, settings: ServerSettings) -> None:
        self.server = server
        service, handlers = inference_handlers(InferenceServicer(server))
        if not handlers:
            raise RuntimeError("the generated gRPC code hands over no method handlers: use --grpc-stack aio")
        checks = header_checks(settings.grpc_restricted_protocols)
        self._methods: dict[bytes, Method] = {}
        for name, handler in handlers.items():
            streaming = handler.stream_stream is not None
            self._methods[f"/{service}/{name}".encode()] = Method(
                name=name,
                streaming=streaming,
                parse=handler.request_deserializer,
                serialize=handler.response_serializer,
                unary=handler.unary_unary,
                stream=handler.stream_stream,
                restriction=checks.get(GRPC_CATEGORIES[name]),
                gated=name not in _ALWAYS_ANSWERED,
            )

    def lookup(self, path: bytes) -> Method | None:
        return self._methods.get(path)
