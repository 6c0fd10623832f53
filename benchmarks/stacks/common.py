"""Shared pieces of the add_sub floor servers (no model): the same answers as
/work/shared/peers/floors/grpc_floor.py, in two forms:

* typed:  functions taking/returning protobuf messages (for typed servicers);
* raw:    functions taking the serialized request bytes and returning the
          serialized response bytes (for generic handlers / HTTP/2 servers).

Every server counts ModelInfer calls and reports the count as
ModelStatistics.model_stats[0].inference_count, which bench.py reads before and
after each perf_analyzer run to get CPU per inference exactly.
"""
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"

cfg = mc.ModelConfig(name="add_sub", max_batch_size=8, backend="python")
for _n in ("INPUT0", "INPUT1"):
    cfg.input.add(name=_n, data_type=mc.TYPE_FP32, dims=[16])
for _n in ("OUTPUT0", "OUTPUT1"):
    cfg.output.add(name=_n, data_type=mc.TYPE_FP32, dims=[16])
meta = pb.ModelMetadataResponse(
    name="add_sub", versions=["1"], platform="python",
    inputs=[pb.ModelMetadataResponse.TensorMetadata(name=n, datatype="FP32", shape=[-1, 16])
            for n in ("INPUT0", "INPUT1")],
    outputs=[pb.ModelMetadataResponse.TensorMetadata(name=n, datatype="FP32", shape=[-1, 16])
             for n in ("OUTPUT0", "OUTPUT1")])

COUNT = [0]  # ModelInfer calls served (module-global; GIL makes += fine for a floor)


def stats_response() -> pb.ModelStatisticsResponse:
    return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(
        name="add_sub", version="1", inference_count=COUNT[0], execution_count=COUNT[0])])


# ---------------------------------------------------------------- typed form
def infer(req: pb.ModelInferRequest) -> pb.ModelInferResponse:
    """Exactly grpc_floor.py's infer()."""
    COUNT[0] += 1
    a = np.frombuffer(req.raw_input_contents[0], np.float32)
    b = np.frombuffer(req.raw_input_contents[1], np.float32)
    r = pb.ModelInferResponse(model_name=req.model_name, model_version="1", id=req.id)
    for n in ("OUTPUT0", "OUTPUT1"):
        r.outputs.add(name=n, datatype="FP32", shape=[1, 16])
    r.raw_output_contents.extend([(a + b).tobytes(), (a - b).tobytes()])
    return r


TYPED = {
    "ServerLive": lambda r: pb.ServerLiveResponse(live=True),
    "ServerReady": lambda r: pb.ServerReadyResponse(ready=True),
    "ServerMetadata": lambda r: pb.ServerMetadataResponse(name="floor", version="0", extensions=[]),
    "ModelReady": lambda r: pb.ModelReadyResponse(ready=True),
    "ModelMetadata": lambda r: meta,
    "ModelConfig": lambda r: pb.ModelConfigResponse(config=cfg),
    "ModelStatistics": lambda r: stats_response(),
    "ModelInfer": infer,
}
REQ_TYPES = {
    "ServerLive": pb.ServerLiveRequest, "ServerReady": pb.ServerReadyRequest,
    "ServerMetadata": pb.ServerMetadataRequest, "ModelReady": pb.ModelReadyRequest,
    "ModelMetadata": pb.ModelMetadataRequest, "ModelConfig": pb.ModelConfigRequest,
    "ModelStatistics": pb.ModelStatisticsRequest, "ModelInfer": pb.ModelInferRequest,
}


# ------------------------------------------------------------------ raw form
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Precomputed response pieces: fields 5 (outputs: OUTPUT0/OUTPUT1 metadata).
_OUTPUTS = b"".join(
    b"\x2a" + _varint(len(t)) + t for t in (
        pb.ModelInferResponse.InferOutputTensor(name=n, datatype="FP32", shape=[1, 16]).SerializeToString()
        for n in ("OUTPUT0", "OUTPUT1")))
_HEAD = {}  # model_name -> bytes of fields 1 (model_name) and 2 (model_version "1")
_parse = pb.ModelInferRequest.FromString  # upb C parser


def infer_raw(data: bytes) -> bytes:
    """Serialized ModelInferRequest -> serialized ModelInferResponse, byte-identical
    semantics to infer(): fields 1,2,3 then 5 (cached bytes) then 6 (the two outputs)."""
    COUNT[0] += 1
    req = _parse(data)
    raw = req.raw_input_contents
    a = np.frombuffer(raw[0], np.float32)
    b = np.frombuffer(raw[1], np.float32)
    name = req.model_name
    head = _HEAD.get(name)
    if head is None:
        nb = name.encode()
        head = _HEAD[name] = b"\x0a" + _varint(len(nb)) + nb + b"\x12\x011"
    rid = req.id
    s = (a + b).tobytes()
    d = (a - b).tobytes()
    parts = [head]
    if rid:
        ib = rid.encode()
        parts.append(b"\x1a" + _varint(len(ib)) + ib)
    parts.append(_OUTPUTS)
    parts.append(b"\x32" + _varint(len(s)) + s)
    parts.append(b"\x32" + _varint(len(d)) + d)
    return b"".join(parts)


def stream_wrap(resp: bytes) -> bytes:
    """ModelInferResponse bytes -> ModelStreamInferResponse bytes (field 2 infer_response)."""
    return b"\x12" + _varint(len(resp)) + resp


def _const(msg):
    data = msg.SerializeToString()
    return lambda _req: data


RAW = {
    "ServerLive": _const(pb.ServerLiveResponse(live=True)),
    "ServerReady": _const(pb.ServerReadyResponse(ready=True)),
    "ServerMetadata": _const(pb.ServerMetadataResponse(name="floor", version="0", extensions=[])),
    "ModelReady": _const(pb.ModelReadyResponse(ready=True)),
    "ModelMetadata": _const(meta),
    "ModelConfig": _const(pb.ModelConfigResponse(config=cfg)),
    "ModelStatistics": lambda _req: stats_response().SerializeToString(),
    "ModelInfer": infer_raw,
}
