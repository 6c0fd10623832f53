"""grpc.aio floor server for add_sub (no model).

  python aio_server.py PORT [--mode typed|raw] [--loop asyncio|uvloop] [--opt grpc.key=val ...]

--mode typed: the generated servicer (exactly /work/shared/peers/floors/grpc_floor.py).
--mode raw:   grpc.method_handlers_generic_handler with request_deserializer=None and
              response_serializer=None: handlers get bytes and return bytes
              (common.infer_raw: upb parse + hand-built response bytes).
Both implement ModelStreamInfer (bidi) too.
"""
import argparse
import asyncio
import os
import sys

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from opts import parse_opts


class Typed(pbg.GRPCInferenceServiceServicer):
    async def ServerLive(self, r, c): return common.TYPED["ServerLive"](r)
    async def ServerReady(self, r, c): return common.TYPED["ServerReady"](r)
    async def ServerMetadata(self, r, c): return common.TYPED["ServerMetadata"](r)
    async def ModelReady(self, r, c): return common.TYPED["ModelReady"](r)
    async def ModelMetadata(self, r, c): return common.meta
    async def ModelConfig(self, r, c): return common.TYPED["ModelConfig"](r)
    async def ModelStatistics(self, r, c): return common.stats_response()
    async def ModelInfer(self, r, c): return common.infer(r)

    async def ModelStreamInfer(self, it, c):
        async for r in it:
            yield pb.ModelStreamInferResponse(infer_response=common.infer(r))


def raw_handler():
    def unary(fn):
        async def h(req, ctx):
            return fn(req)
        return grpc.unary_unary_rpc_method_handler(h, request_deserializer=None, response_serializer=None)

    async def stream(it, ctx):
        async for req in it:
            yield common.stream_wrap(common.infer_raw(req))

    handlers = {name: unary(fn) for name, fn in common.RAW.items()}
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(stream, None, None)
    return grpc.method_handlers_generic_handler(common.SERVICE, handlers)


async def main(a):
    s = grpc.aio.server(options=parse_opts(a.opt))
    if a.mode == "typed":
        pbg.add_GRPCInferenceServiceServicer_to_server(Typed(), s)
    else:
        s.add_generic_rpc_handlers((raw_handler(),))
    s.add_insecure_port(f"127.0.0.1:{a.port}")
    await s.start()
    await s.wait_for_termination()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", choices=("typed", "raw"), default="typed")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--opt", action="append")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(a))
