"""The one import point for Triton's generated protocol modules (shipped by tritonclient).

ModelConfig (model_config.proto) and the GRPCInferenceService messages and stubs come from here so
the rest of the code never imports tritonclient's generated modules directly.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

ModelConfigProto = model_config_pb2.ModelConfig

__all__ = ["ModelConfigProto", "model_config_pb2", "service_pb2", "service_pb2_grpc"]
