"""Which requests become calls: a request's headers are checked as grpc-core and Triton check them
(HTTP method and content type, the RPC's path, the protocol restriction, grpc-encoding and
grpc-timeout), then the Call that serves the request is built with its context and deadline."""

from __future__ import annotations

import time

from modelport.frontends.grpc.h2.calls import Call, Link
from modelport.frontends.grpc.h2.context import CallContext
from modelport.frontends.grpc.h2.headers import RequestHead, timeout_seconds
from modelport.frontends.grpc.h2.messages import (
    UNAVAILABLE,
    UNIMPLEMENTED,
    MessageReader,
    WireError,
    encoding_bits,
)
from modelport.frontends.grpc.h2.options import H2Options
from modelport.frontends.grpc.h2.service import Service


class HttpRefusal(Exception):
    """A request that is not gRPC at all: answered with a bare HTTP `status`."""

    def __init__(self, status: bytes) -> None:
        super().__init__(status.decode())
        self.status = status


def open_call(
    link: Link, stream_id: int, head: RequestHead, service: Service, options: H2Options, peer: str
) -> Call:
    """The call for a request; WireError (a gRPC status) or HttpRefusal when it is refused."""
    if head.method != b"POST":
        raise HttpRefusal(b"405")
    if not head.content_type.startswith(b"application/grpc"):
        raise HttpRefusal(b"415")  # the gRPC spec's answer to other content types
    method = service.lookup(head.path)
    if method is None:
        raise WireError(UNIMPLEMENTED, "Method not found!")
    check = method.restriction
    if check is not None and not check.allows_grpc(head.metadata):
        raise WireError(UNAVAILABLE, check.grpc_message)
    reader = MessageReader(options.receive_limit, encoding_bits(head.encoding))
    timeout = None if head.timeout is None else timeout_seconds(head.timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    context = CallContext(head.metadata, deadline, peer)
    call = Call(link, stream_id, method, service, reader, context, options.send_limit)
    if timeout is not None:
        call.set_deadline(timeout)
    return call
