"""The wrapped gRPC method handlers: malformed messages become a value the handler refuses, and an
aborted call no longer keeps its request alive through the AbortError grpc stores."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from modelport.frontends.grpc.method_handlers import Malformed, tolerant, wrap_unary, wrapped
from modelport.protocol import service_pb2


class FakeContext:
    """Keeps the AbortError it raises, as grpc's per-call state does."""

    def __init__(self) -> None:
        self.aborted: grpc.aio.AbortError | None = None
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        self.aborted = grpc.aio.AbortError("Locally aborted.")
        raise self.aborted


class Request:
    """Stands for a large request message (weakly referenceable, to see when it is freed)."""


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects: what a cycle holds stays held."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_garbage_becomes_malformed() -> None:
    parse = tolerant(service_pb2.ModelInferRequest.FromString)
    assert parse is not None
    result = parse(b"\x0a\xff\xff\xff\xff\x0f")
    assert isinstance(result, Malformed)
    assert result.message.startswith("failed to parse the request protobuf message: Error parsing message")
    assert parse(service_pb2.ModelInferRequest(model_name="m").SerializeToString()).model_name == "m"


async def test_malformed_request_is_invalid_argument() -> None:
    async def behavior(request: Any, context: Any) -> Any:
        raise AssertionError("not called for a malformed request")

    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await wrap_unary(behavior)(Malformed("bad bytes"), context)
    assert (context.code, context.details) == (grpc.StatusCode.INVALID_ARGUMENT, "bad bytes")


async def aborting(request: Any, context: Any) -> Any:
    """A handler that refuses its request the way the servicer does: abort inside an except block."""
    try:
        raise ValueError("the request is wrong")
    except ValueError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


@pytest.mark.usefixtures("no_collector")
async def test_an_aborted_call_releases_its_request() -> None:
    context = FakeContext()
    request = Request()
    freed = weakref.ref(request)
    with pytest.raises(grpc.aio.AbortError):
        await wrap_unary(aborting)(request, context)
    del request
    assert freed() is None
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT  # the status is kept


@pytest.mark.usefixtures("no_collector")
async def test_unwrapped_the_request_stays_held() -> None:
    # What the wrapper is for: grpc's stored AbortError -> traceback -> handler frame -> request.
    context = FakeContext()
    request = Request()
    freed = weakref.ref(request)
    with pytest.raises(grpc.aio.AbortError):
        await aborting(request, context)
    del request
    assert freed() is not None
    context.aborted = None
    gc.collect()
    assert freed() is None


def test_wrapped_handlers_keep_their_serializers() -> None:
    serializer = service_pb2.ModelInferResponse.SerializeToString

    async def behavior(request: Any, context: Any) -> Any:
        return None

    handler = grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=service_pb2.ModelInferRequest.FromString,
        response_serializer=serializer,
    )
    result = wrapped(handler)
    assert result.response_serializer is serializer
    assert result.unary_unary is not behavior
    assert isinstance(result.request_deserializer(b"\xff"), Malformed)
