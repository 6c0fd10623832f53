"""GRPCInferenceService over HTTP/2 on the `h2` library: an asyncio Protocol per connection instead
of grpc.aio's per-call machinery (the default --grpc-stack)."""

from modelport.frontends.grpc.h2.server import H2GrpcServer

__all__ = ["H2GrpcServer"]
