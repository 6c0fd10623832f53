"""grpc synchronous-server floor for add_sub (no model).

  python sync_server.py PORT [--mode typed|raw] [--workers N] [--max-rpcs M] [--opt grpc.key=val ...]

grpc.server(ThreadPoolExecutor(max_workers=N)): the C-core completion queue is
polled by grpc's own Python thread (GIL released while waiting); each RPC's
handler runs on a pool thread.
--mode typed: the generated servicer; --mode raw: generic handler on bytes.
Both implement ModelStreamInfer (bidi; it occupies one pool thread per open stream).
"""
import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from opts import parse_opts


class Typed(pbg.GRPCInferenceServiceServicer):
    def ServerLive(self, r, c): return common.TYPED["ServerLive"](r)
    def ServerReady(self, r, c): return common.TYPED["ServerReady"](r)
    def ServerMetadata(self, r, c): return common.TYPED["ServerMetadata"](r)
    def ModelReady(self, r, c): return common.TYPED["ModelReady"](r)
    def ModelMetadata(self, r, c): return common.meta
    def ModelConfig(self, r, c): return common.TYPED["ModelConfig"](r)
    def ModelStatistics(self, r, c): return common.stats_response()
    def ModelInfer(self, r, c): return common.infer(r)

    def ModelStreamInfer(self, it, c):
        for r in it:
            yield pb.ModelStreamInferResponse(infer_response=common.infer(r))


def raw_handler():
    def unary(fn):
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: fn(req), None, None)

    def stream(it, ctx):
        for req in it:
            yield common.stream_wrap(common.infer_raw(req))

    handlers = {name: unary(fn) for name, fn in common.RAW.items()}
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(stream, None, None)
    return grpc.method_handlers_generic_handler(common.SERVICE, handlers)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", choices=("typed", "raw"), default="typed")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-rpcs", type=int, default=None)
    ap.add_argument("--opt", action="append")
    a = ap.parse_args()
    s = grpc.server(ThreadPoolExecutor(max_workers=a.workers), options=parse_opts(a.opt),
                    maximum_concurrent_rpcs=a.max_rpcs)
    if a.mode == "typed":
        pbg.add_GRPCInferenceServiceServicer_to_server(Typed(), s)
    else:
        s.add_generic_rpc_handlers((raw_handler(),))
    s.add_insecure_port(f"127.0.0.1:{a.port}")
    s.start()
    try:
        s.wait_for_termination()
    except KeyboardInterrupt:
        s.stop(0)
