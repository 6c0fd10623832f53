#!/usr/bin/env python3
"""In-process onnxruntime baseline: how fast is the model without a server?

For each batch size, after a warm-up, runs ``--repeats`` timed windows of
``--seconds`` each. Inside a window ``session.run`` is called back-to-back on
one pre-generated random input (no concurrency, no serialization, no network),
so the numbers are an upper bound for what a server wrapping the same session
could achieve with the same thread settings.

Reported per batch size:
  * throughput (inferences/s = calls * batch_size / window) -- median, min
    and max over the windows;
  * per-call latency p50 / p99 in ms -- computed inside each window, then the
    median over the windows;
  * process CPU use during the windows (100% = one core busy).

Dynamic input dimensions: a dynamic leading dimension becomes the batch size;
any other dynamic dimension is 1 unless overridden with ``--shape NAME:D1,D2``
(dims given *without* the batch dimension, as in perf_analyzer). If no input
has a dynamic leading dimension the model cannot be batched: it is measured
once and reported as batch size 1 (one call = one inference).

Example:
  python benchmarks/raw_ort.py --model repo/m/1/model.onnx \
      --batch-sizes 1,2,4,8 --seconds 3 --repeats 5 --json raw.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from bench_common import (
    machine_info,
    median,
    parse_int_list,
    parse_shape_overrides,
    percentile,
    self_cpu_seconds,
    summarize,
    write_json,
)

ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def is_dynamic(dim) -> bool:
    return not isinstance(dim, int) or dim < 0


def random_array(rng: np.random.Generator, dtype, shape: list[int]) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.object_:
        n = int(np.prod(shape)) if shape else 1
        return np.array([f"s{int(i):04d}" for i in rng.integers(0, 10000, n)], dtype=object).reshape(shape)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype, copy=False)
    # Small non-negative integers: safe for index-like inputs (embeddings, gather).
    return rng.integers(0, 64, size=shape).astype(dtype)


class InputPlan:
    """How to build the feed dict for a given batch size."""

    def __init__(self, session, shape_overrides: dict[str, list[int]]):
        self.inputs = []
        self.batching = False
        for meta in session.get_inputs():
            if meta.type not in ORT_TO_NUMPY:
                raise SystemExit(f"input {meta.name!r}: unsupported type {meta.type}")
            dims = list(meta.shape) if meta.shape is not None else []
            batched = bool(dims) and is_dynamic(dims[0])
            self.batching |= batched
            self.inputs.append((meta.name, ORT_TO_NUMPY[meta.type], dims, batched))
        unknown = set(shape_overrides) - {name for name, *_ in self.inputs}
        if unknown:
            raise SystemExit(f"--shape given for unknown input(s): {sorted(unknown)}")
        self.overrides = shape_overrides

    def shape_for(self, name, dims, batched, batch_size) -> list[int]:
        inner = dims[1:] if batched else dims
        if name in self.overrides:
            over = self.overrides[name]
            if len(over) != len(inner):
                raise SystemExit(
                    f"--shape {name}: expected {len(inner)} dims (model dims {dims}"
                    f"{', batch dim excluded' if batched else ''}), got {over}"
                )
            inner = over
        inner = [1 if is_dynamic(d) else int(d) for d in inner]
        return ([batch_size] if batched else []) + inner

    def feed(self, rng, batch_size) -> dict[str, np.ndarray]:
        return {
            name: random_array(rng, dtype, self.shape_for(name, dims, batched, batch_size))
            for name, dtype, dims, batched in self.inputs
        }


def timed_window(run, feed, seconds: float) -> dict:
    lat_ns = []
    cpu0 = self_cpu_seconds()
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    t1 = start
    while t1 < deadline:
        t0 = time.perf_counter_ns()
        run(None, feed)
        t1 = time.perf_counter_ns()
        lat_ns.append(t1 - t0)
    wall = (t1 - start) / 1e9
    cpu = self_cpu_seconds() - cpu0
    lat_ms = [x / 1e6 for x in lat_ns]
    return {
        "calls": len(lat_ns),
        "wall_s": wall,
        "calls_per_s": len(lat_ns) / wall,
        "p50_ms": percentile(lat_ms, 50),
        "p99_ms": percentile(lat_ms, 99),
        "mean_ms": sum(lat_ms) / len(lat_ms),
        "cpu_pct": 100.0 * cpu / wall if wall > 0 else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path to an .onnx file")
    ap.add_argument("--batch-sizes", default="1,2,4,8", help="comma list (default 1,2,4,8)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one timed window (default 3)")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows per batch size (default 5)")
    ap.add_argument("--warmup-seconds", type=float, default=1.0,
                    help="untimed warm-up per batch size (default 1)")
    ap.add_argument("--intra-op-threads", type=int, default=0, help="0 = onnxruntime default (default 0)")
    ap.add_argument("--inter-op-threads", type=int, default=0, help="0 = onnxruntime default (default 0)")
    ap.add_argument("--shape", action="append", metavar="NAME:D1,D2",
                    help="fixed value for dynamic non-batch dims of an input (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    batch_sizes = parse_int_list(args.batch_sizes)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.intra_op_threads
    so.inter_op_num_threads = args.inter_op_threads
    session = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])
    plan = InputPlan(session, parse_shape_overrides(args.shape))
    if not plan.batching:
        print("note: no input has a dynamic leading dimension; measuring the fixed shape once "
              "and reporting it as batch size 1", file=sys.stderr)
        batch_sizes = [1]

    rng = np.random.default_rng(args.seed)
    results = []
    for bs in batch_sizes:
        feed = plan.feed(rng, bs)
        warm_end = time.perf_counter() + args.warmup_seconds
        n = 0
        while n < 3 or time.perf_counter() < warm_end:
            session.run(None, feed)
            n += 1
        windows = [timed_window(session.run, feed, args.seconds) for _ in range(args.repeats)]
        items = bs if plan.batching else 1
        thr = summarize(w["calls_per_s"] * items for w in windows)
        res = {
            "batch_size": bs,
            "input_shapes": {k: list(v.shape) for k, v in feed.items()},
            "throughput": thr,
            "latency_ms": {
                "p50": median(w["p50_ms"] for w in windows),
                "p99": median(w["p99_ms"] for w in windows),
                "mean": median(w["mean_ms"] for w in windows),
            },
            "cpu_pct": median(w["cpu_pct"] for w in windows),
            "windows": windows,
        }
        results.append(res)
        print(
            f"batch {bs:>4}: {thr['median']:>10.1f} infer/s (min {thr['min']:.1f}, max {thr['max']:.1f}) "
            f"p50 {res['latency_ms']['p50']:.3f} ms  p99 {res['latency_ms']['p99']:.3f} ms  "
            f"cpu {res['cpu_pct']:.0f}%",
            flush=True,
        )

    best = max(results, key=lambda r: r["throughput"]["median"])
    payload = {
        "tool": "raw_ort",
        "model": os.path.abspath(args.model),
        "onnxruntime_version": ort.__version__,
        "intra_op_threads": args.intra_op_threads,
        "inter_op_threads": args.inter_op_threads,
        "batching": plan.batching,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "warmup_seconds": args.warmup_seconds,
        "machine": machine_info(),
        "best": {"batch_size": best["batch_size"], "throughput": best["throughput"]["median"]},
        "results": results,
    }
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
