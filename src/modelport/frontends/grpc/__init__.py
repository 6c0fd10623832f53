"""gRPC frontend: Triton's inference.GRPCInferenceService on grpc.aio."""

from modelport.frontends.grpc.server import GrpcServer
from modelport.frontends.grpc.servicer import InferenceServicer

__all__ = ["GrpcServer", "InferenceServicer"]
