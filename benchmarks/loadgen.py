#!/usr/bin/env python3
"""Closed-loop load generator for KServe v2 / Triton servers (HTTP or gRPC).

Built on tritonclient's asyncio clients (``tritonclient.http.aio`` and
``tritonclient.grpc.aio``). For each concurrency level N in ``--concurrency``:

  * N coroutines share one client (HTTP: a connection pool of N connections;
    gRPC: one channel) and each sends requests back-to-back: the next request
    leaves as soon as the previous response has arrived (closed loop);
  * the first ``--warmup-seconds`` are not measured; then a window of
    ``--seconds`` is measured: every request that *completes* inside the
    window counts, with its full latency (send -> response parsed);
  * after the window no new requests are started; in-flight ones are awaited
    (bounded by ``--request-timeout``) and discarded.

Reported per level: throughput in inferences/s (= successful requests *
batch size / window), latency p50/p90/p99/mean in ms, error count, and the
CPU used by this process (and by ``--server-pid`` and its children, if given)
during the window, where 100% = one core.

Inputs are built from the model metadata (and config, if the server has the
Triton model-configuration extension) fetched from the server: random data for
numeric types, short strings for BYTES. The batch dimension is prepended when
the model batches (config ``max_batch_size > 0``; without a config: every input
has a leading -1). Other -1 dims become 1 unless ``--shape NAME:D1,D2`` is
given (dims without the batch dimension, as in perf_analyzer). HTTP uses the
binary tensor extension for inputs and outputs unless ``--http-json``.

The whole process is bounded in time: it exits by itself (an alarm aborts it
if something hangs past the computed budget).

Example:
  python benchmarks/loadgen.py --url 127.0.0.1:8000 --protocol http \
      --model simple --batch-size 1 --concurrency 1,8 --seconds 10 --json lg.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from bench_common import (
    machine_info,
    parse_int_list,
    parse_shape_overrides,
    percentile,
    process_tree_cpu_seconds,
    self_cpu_seconds,
    write_json,
)


def log(msg: str) -> None:
    print(f"[loadgen] {msg}", file=sys.stderr, flush=True)


def strip_scheme(url: str) -> str:
    for prefix in ("http://", "https://", "grpc://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    return url.rstrip("/")


# ------------------------------------------------------------ model discovery
class ModelInfo:
    def __init__(self, name, version, inputs, outputs, max_batch_size, batching, source):
        self.name = name
        self.version = version
        self.inputs = inputs  # list of (name, datatype, shape-without-batch)
        self.outputs = outputs  # list of names
        self.max_batch_size = max_batch_size
        self.batching = batching
        self.source = source

    def as_dict(self):
        return {
            "name": self.name,
            "version": self.version,
            "inputs": [{"name": n, "datatype": d, "dims": s} for n, d, s in self.inputs],
            "outputs": self.outputs,
            "max_batch_size": self.max_batch_size,
            "batching": self.batching,
            "shape_source": self.source,
        }


async def fetch_model_info(protocol: str, url: str, model: str, version: str) -> ModelInfo:
    if protocol == "http":
        import tritonclient.http.aio as client_mod

        client = client_mod.InferenceServerClient(url, conn_limit=1)
        get_meta = lambda: client.get_model_metadata(model, version)  # noqa: E731
        get_cfg = lambda: client.get_model_config(model, version)  # noqa: E731
    else:
        import tritonclient.grpc.aio as client_mod

        client = client_mod.InferenceServerClient(url)
        get_meta = lambda: client.get_model_metadata(model, version, as_json=True)  # noqa: E731
        get_cfg = lambda: client.get_model_config(model, version, as_json=True)  # noqa: E731
    try:
        meta = await asyncio.wait_for(get_meta(), 30)
        try:
            cfg = await asyncio.wait_for(get_cfg(), 30)
            cfg = cfg.get("config", cfg)  # gRPC wraps it in {"config": ...}
        except Exception as exc:  # the config endpoint is a Triton extension
            log(f"model config unavailable ({str(exc).strip()[:120]}); using metadata only")
            cfg = None
    finally:
        await client.close()

    # gRPC-as-JSON renders int64 as strings; MessageToJson omits zero values.
    in_meta = [
        (t["name"], t["datatype"], [int(d) for d in t.get("shape", [])]) for t in meta.get("inputs", [])
    ]
    outputs = [t["name"] for t in meta.get("outputs", [])]
    if not in_meta:
        raise SystemExit(f"model {model!r}: metadata lists no inputs: {meta}")

    if cfg:  # Triton semantics: an absent max_batch_size means 0 (no batching)
        max_batch = int(cfg.get("max_batch_size", 0) or 0)
        batching = max_batch > 0
        source = "metadata+config"
    else:
        max_batch = 0
        batching = all(s and s[0] == -1 for _, _, s in in_meta)
        source = "metadata (batching guessed from leading -1)"

    inputs = []
    for name, dtype, shape in in_meta:
        if batching:
            if shape and shape[0] == -1:
                shape = shape[1:]
            elif cfg is not None:
                # Metadata without the batch dim: trust the config dims.
                dims = {t["name"]: [int(d) for d in t.get("dims", [])] for t in cfg.get("input", [])}
                shape = dims.get(name, shape)
        inputs.append((name, dtype, shape))
    return ModelInfo(model, version, inputs, outputs, max_batch, batching, source)


# ------------------------------------------------------------------ inputs
def random_tensor(rng, datatype: str, shape: list[int], string_length: int):
    from tritonclient.utils import triton_to_np_dtype

    if datatype == "BYTES":
        n = int(np.prod(shape)) if shape else 1
        alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
        chars = rng.choice(alphabet, size=(n, string_length))
        return np.array([row.tobytes() for row in chars], dtype=np.object_).reshape(shape)
    np_dtype = triton_to_np_dtype(datatype)
    if np_dtype is None:
        raise SystemExit(f"unsupported datatype {datatype}")
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        return rng.random(shape, dtype=np.float32).astype(np_dtype)
    # Small non-negative integers: valid for index-like inputs.
    return rng.integers(0, 64, size=shape).astype(np_dtype)


def build_inputs(protocol, info: ModelInfo, batch_size, overrides, string_length, http_binary, seed):
    if protocol == "http":
        import tritonclient.http as mod
    else:
        import tritonclient.grpc as mod
    unknown = set(overrides) - {n for n, _, _ in info.inputs}
    if unknown:
        raise SystemExit(f"--shape given for unknown input(s) {sorted(unknown)}; model inputs: "
                         f"{[n for n, _, _ in info.inputs]}")
    rng = np.random.default_rng(seed)
    tensors, shapes = [], {}
    for name, dtype, dims in info.inputs:
        if name in overrides:
            if len(overrides[name]) != len(dims):
                raise SystemExit(
                    f"--shape {name}: model dims (without batch) are {dims}, got {overrides[name]}"
                )
            dims = overrides[name]
        dims = [1 if d < 0 else d for d in dims]
        shape = ([batch_size] if info.batching else []) + dims
        arr = random_tensor(rng, dtype, shape, string_length)
        t = mod.InferInput(name, shape, dtype)
        if protocol == "http":
            # BF16 has no JSON representation: always binary.
            t.set_data_from_numpy(arr, binary_data=http_binary or dtype == "BF16")
        else:
            t.set_data_from_numpy(arr)
        tensors.append(t)
        shapes[name] = shape
    outputs = None  # HTTP: all outputs, binary (binary_data_output=true)
    if protocol == "http" and not http_binary:
        outputs = [mod.InferRequestedOutput(n, binary_data=False) for n in info.outputs]
    return tensors, outputs, shapes


# --------------------------------------------------------------- one level
async def run_level(args, info, concurrency, inputs, outputs) -> dict:
    if args.protocol == "http":
        import tritonclient.http.aio as client_mod

        client = client_mod.InferenceServerClient(
            args.url, conn_limit=concurrency, conn_timeout=args.request_timeout
        )

        def infer():
            return client.infer(info.name, inputs, model_version=info.version, outputs=outputs)
    else:
        import tritonclient.grpc.aio as client_mod

        client = client_mod.InferenceServerClient(args.url)

        def infer():
            return client.infer(info.name, inputs, model_version=info.version,
                                client_timeout=args.request_timeout)

    # time.perf_counter, not loop.time(): uvloop's clock has 1 ms resolution.
    now = time.perf_counter
    t_start = now()
    win_start = t_start + args.warmup_seconds
    win_end = win_start + args.seconds
    latencies: list[float] = []
    errors_in_window = 0
    errors_total = 0
    error_kinds: Counter = Counter()
    too_many_errors = asyncio.Event()
    abort_time: list[float] = []
    cpu: dict = {}

    async def worker():
        nonlocal errors_in_window, errors_total
        while not too_many_errors.is_set():
            t0 = now()
            if t0 >= win_end:
                return
            try:
                await infer()
                ok = True
            except Exception as exc:  # count and keep going
                ok = False
                errors_total += 1
                error_kinds[f"{type(exc).__name__}: {str(exc).strip()[:160]}"] += 1
                if errors_total >= args.max_errors and not too_many_errors.is_set():
                    too_many_errors.set()
                    abort_time.append(now())
            t1 = now()
            if win_start <= t1 <= win_end:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors_in_window += 1
            if not ok:
                await asyncio.sleep(0.001)  # do not spin on a dead server

    async def cpu_monitor():
        await asyncio.sleep(max(0.0, win_start - now()))
        cpu["t0"] = now()
        cpu["self0"] = self_cpu_seconds()
        if args.server_pid:
            cpu["srv0"] = process_tree_cpu_seconds(args.server_pid)
        await asyncio.sleep(max(0.0, win_end - now()))
        cpu["t1"] = now()
        cpu["self1"] = self_cpu_seconds()
        if args.server_pid:
            cpu["srv1"] = process_tree_cpu_seconds(args.server_pid)

    monitor = asyncio.create_task(cpu_monitor())
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    hard_deadline = win_end + args.request_timeout + 5
    _, pending = await asyncio.wait(workers, timeout=max(0.1, hard_deadline - now()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        log(f"cancelled {len(pending)} worker(s) stuck past the deadline")
    # Workers can all finish just before the monitor wakes at win_end: let it
    # take its closing sample rather than cancelling it.
    if abort_time:
        monitor.cancel()
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(monitor, timeout=max(1.0, win_end - now() + 1.0))
    await client.close()

    window = args.seconds
    if abort_time:
        # Only the part of the window before the abort was measured.
        window = max(0.0, min(win_end, abort_time[0]) - win_start)
        log(f"concurrency {concurrency}: stopped early after {errors_total} errors "
            f"({window:.2f}s of the window measured)")
    lat_ms = [x * 1000.0 for x in latencies]
    ok = len(lat_ms)
    res = {
        "concurrency": concurrency,
        "batch_size": args.batch_size,
        "window_s": window,
        "requests": ok,
        "errors": errors_in_window,
        "errors_total": errors_total,
        "aborted": too_many_errors.is_set(),
        "throughput": ok * (args.batch_size if info.batching else 1) / window if window > 0 else 0.0,
        "requests_per_s": ok / window if window > 0 else 0.0,
        "latency_ms": {
            "p50": percentile(lat_ms, 50),
            "p90": percentile(lat_ms, 90),
            "p99": percentile(lat_ms, 99),
            "mean": (sum(lat_ms) / ok) if ok else None,
            "max": max(lat_ms) if ok else None,
        },
        "error_kinds": dict(error_kinds.most_common(5)),
    }
    if "t1" in cpu:
        span = cpu["t1"] - cpu["t0"]
        res["cpu_pct"] = {"loadgen": 100.0 * (cpu["self1"] - cpu["self0"]) / span}
        if cpu.get("srv0") is not None and cpu.get("srv1") is not None:
            res["cpu_pct"]["server"] = 100.0 * (cpu["srv1"] - cpu["srv0"]) / span
    return res


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


async def amain(args) -> int:
    try:
        info = await fetch_model_info(args.protocol, args.url, args.model, args.model_version)
    except (Exception, asyncio.TimeoutError) as exc:
        log(f"cannot get metadata of model {args.model!r} from {args.protocol}://{args.url}: "
            f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        return 2
    if args.batch_size > 1 and not info.batching:
        raise SystemExit(f"model {args.model!r} does not batch (max_batch_size 0); use --batch-size 1")
    if info.batching and info.max_batch_size and args.batch_size > info.max_batch_size:
        raise SystemExit(f"--batch-size {args.batch_size} exceeds max_batch_size {info.max_batch_size}")
    inputs, outputs, shapes = build_inputs(
        args.protocol, info, args.batch_size, parse_shape_overrides(args.shape),
        args.string_length, not args.http_json, args.seed,
    )
    log(f"{args.protocol}://{args.url} model={info.name} batching={info.batching} "
        f"({info.source}) input shapes={shapes}")

    levels = []
    for c in parse_int_list(args.concurrency):
        res = await run_level(args, info, c, inputs, outputs)
        levels.append(res)
        lat = res["latency_ms"]
        cpu = res.get("cpu_pct", {})
        print(
            f"{args.protocol} batch {args.batch_size} concurrency {c:>3}: "
            f"{res['throughput']:>9.1f} infer/s  p50 {fmt(lat['p50'])} ms  p90 {fmt(lat['p90'])} ms  "
            f"p99 {fmt(lat['p99'])} ms  errors {res['errors']} (total {res['errors_total']})  "
            f"cpu loadgen {fmt(cpu.get('loadgen'), '.0f')}% server {fmt(cpu.get('server'), '.0f')}%",
            flush=True,
        )
        for kind, n in res["error_kinds"].items():
            log(f"  {n} x {kind}")

    payload = {
        "tool": "loadgen",
        "protocol": args.protocol,
        "url": args.url,
        "model": info.as_dict(),
        "batch_size": args.batch_size,
        "input_shapes": shapes,
        "http_binary": args.protocol == "http" and not args.http_json,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "machine": machine_info(),
        "levels": levels,
    }
    write_json(args.json, payload)
    return 0 if all(lv["requests"] > 0 and not lv["aborted"] for lv in levels) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="host:port (default 127.0.0.1:8000 http, :8001 grpc)")
    ap.add_argument("--protocol", choices=("http", "grpc"), default="http")
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-version", default="", help="default: server's choice")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--concurrency", default="1,8",
                    help="comma list of levels, each run in turn (default 1,8)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="measurement window per level (default 10)")
    ap.add_argument("--warmup-seconds", type=float, default=2.0,
                    help="unmeasured warm-up per level (default 2)")
    ap.add_argument("--shape", action="append", metavar="NAME:D1,D2",
                    help="dims (without batch) for an input with -1 dims (repeatable)")
    ap.add_argument("--string-length", type=int, default=8,
                    help="length of random BYTES elements (default 8)")
    ap.add_argument("--http-json", action="store_true", help="HTTP: JSON tensors instead of binary extension")
    ap.add_argument("--request-timeout", type=float, default=30.0,
                    help="per-request timeout in s (default 30)")
    ap.add_argument("--max-errors", type=int, default=1000, help="stop a level after this many errors")
    ap.add_argument("--server-pid", type=int, help="also report CPU use of this process tree (from /proc)")
    ap.add_argument("--no-uvloop", action="store_true", help="use the default asyncio event loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    args.url = strip_scheme(args.url or ("127.0.0.1:8000" if args.protocol == "http" else "127.0.0.1:8001"))
    if args.batch_size < 1:
        ap.error("--batch-size must be >= 1")
    n_levels = len(parse_int_list(args.concurrency))

    # Hard bound on the process lifetime, whatever happens.
    budget = 60 + n_levels * (args.warmup_seconds + args.seconds + args.request_timeout + 10)
    signal.signal(signal.SIGALRM, lambda *_: (log(f"time budget of {budget:.0f}s exceeded; aborting"),
                                              os._exit(3)))
    signal.alarm(int(budget) + 1)

    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
