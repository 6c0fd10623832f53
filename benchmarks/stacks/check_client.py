"""Functional check of a floor server with tritonclient.grpc (sync, aio, stream).

  python check_client.py PORT [--aio] [--stream] [--big]
"""
import argparse
import asyncio
import queue

import numpy as np
import tritonclient.grpc as g
import tritonclient.grpc.aio as ga


def inputs(mod):
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.full((1, 16), 2, np.float32)
    ins = [mod.InferInput("INPUT0", [1, 16], "FP32"), mod.InferInput("INPUT1", [1, 16], "FP32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    return a, b, ins


def check(res, a, b):
    assert np.array_equal(res.as_numpy("OUTPUT0"), a + b), res.as_numpy("OUTPUT0")
    assert np.array_equal(res.as_numpy("OUTPUT1"), a - b)


def sync(url):
    c = g.InferenceServerClient(url)
    assert c.is_server_live() and c.is_model_ready("add_sub")
    c.get_model_metadata("add_sub")
    c.get_model_config("add_sub")
    a, b, ins = inputs(g)
    for i in range(3):
        r = c.infer("add_sub", ins, request_id=f"r{i}")
        check(r, a, b)
        assert r.get_response().id == f"r{i}"
    print("sync ok")


async def aio(url):
    c = ga.InferenceServerClient(url)
    assert await c.is_server_live()
    a, b, ins = inputs(ga)
    rs = await asyncio.gather(*[c.infer("add_sub", ins, request_id=str(i)) for i in range(8)])
    for r in rs:
        check(r, a, b)

    async def reqs():
        for i in range(5):
            yield {"model_name": "add_sub", "inputs": ins, "request_id": f"s{i}"}
    n = 0
    async for res, err in c.stream_infer(reqs()):
        assert err is None, err
        check(res, a, b)
        n += 1
    assert n == 5
    await c.close()
    print("aio ok (unary x8 concurrent + stream_infer x5)")


def stream(url):
    c = g.InferenceServerClient(url)
    q = queue.Queue()
    c.start_stream(callback=lambda result, error: q.put((result, error)))
    a, b, ins = inputs(g)
    for i in range(5):
        c.async_stream_infer("add_sub", ins, request_id=f"t{i}")
    for i in range(5):
        res, err = q.get(timeout=10)
        assert err is None, err
        check(res, a, b)
    c.stop_stream()
    print("sync stream ok (start_stream + async_stream_infer x5)")


def check_raw(res, a, b):
    # the floor answers shape [1, 16] whatever the input size (as grpc_floor.py), so compare bytes
    raw = res.get_response().raw_output_contents
    assert np.array_equal(np.frombuffer(raw[0], np.float32), (a + b).ravel())
    assert np.array_equal(np.frombuffer(raw[1], np.float32), (a - b).ravel())


def big(url):
    """Messages far over the 64 KiB default HTTP/2 windows and 16 KiB frames (flow control)."""
    c = g.InferenceServerClient(url)
    for n in (300000, 1000000):
        a = np.random.rand(1, n).astype(np.float32)
        b = np.random.rand(1, n).astype(np.float32)
        ins = [g.InferInput("INPUT0", [1, n], "FP32"), g.InferInput("INPUT1", [1, n], "FP32")]
        ins[0].set_data_from_numpy(a)
        ins[1].set_data_from_numpy(b)
        for _ in range(2):
            check_raw(c.infer("add_sub", ins), a, b)
        q = queue.Queue()
        c.start_stream(callback=lambda result, error: q.put((result, error)))
        for _ in range(3):
            c.async_stream_infer("add_sub", ins)
        for _ in range(3):
            res, err = q.get(timeout=30)
            assert err is None, err
            check_raw(res, a, b)
        c.stop_stream()
    print("big messages ok (1.2 MB and 4 MB per tensor, unary and stream)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port")
    ap.add_argument("--aio", action="store_true")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--big", action="store_true")
    a = ap.parse_args()
    url = f"127.0.0.1:{a.port}"
    sync(url)
    if a.stream:
        stream(url)
    if a.aio:
        asyncio.run(aio(url))
    if a.big:
        big(url)
