#!/usr/bin/env python3
"""How much onnxruntime throughput is lost when something else shares the cores.

A server never has the cores to itself: its event loop parses requests, and on a small machine
the load generator runs beside it. This measures raw onnxruntime throughput for two layouts of
the same thread budget, alone and next to a bursty competitor process that keeps a given share
of one core busy in short bursts (as an event loop and a client do):

  * one session with N intra-op threads (the server's default for a single-instance model);
  * N sessions with one thread each, run from N Python threads (instance_group count N).

A layout whose threads meet at a barrier after every operator loses more than the competitor's
share: one preempted thread stalls the others. Independent single-thread sessions lose only
about the share itself.

Example (the figures in RESULTS.md):
  python benchmarks/contention.py --model examples/model_repository/mobilenet_v2/1/model.onnx \\
      --batch-size 8 --threads 2 --busy-share 0.25 --seconds 6 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

# The competitor: busy for `burst` seconds, then asleep so that the busy share is `share`.
COMPETITOR = """
import sys, time
burst, share = float(sys.argv[1]), float(sys.argv[2])
idle = burst * (1 - share) / share
while True:
    end = time.perf_counter() + burst
    while time.perf_counter() < end:
        pass
    time.sleep(idle)
"""


def session(model: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if threads > 1 else "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def throughput(
    sessions: list[ort.InferenceSession], feed: dict[str, np.ndarray], batch: int, seconds: float
) -> float:
    """Inferences/s with every session run back to back from its own thread."""
    counts = [0] * len(sessions)
    for s in sessions:
        s.run(None, feed)  # warm-up
    stop = time.monotonic() + seconds

    def drive(i: int) -> None:
        while time.monotonic() < stop:
            sessions[i].run(None, feed)
            counts[i] += batch

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(sessions))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def measure(
    layout: list[ort.InferenceSession], feed: dict[str, np.ndarray], args: argparse.Namespace, compete: bool
) -> float:
    competitor = None
    if compete:
        competitor = subprocess.Popen(
            [sys.executable, "-c", COMPETITOR, str(args.burst_ms / 1000), str(args.busy_share)]
        )
    try:
        return throughput(layout, feed, args.batch_size, args.seconds)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ONNX file: one FP32 input, dynamic batch dimension")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="thread budget N (default 2)")
    ap.add_argument("--busy-share", type=float, default=0.25, help="share of one core the competitor uses")
    ap.add_argument("--burst-ms", type=float, default=0.5, help="length of one competitor burst")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    probe = session(args.model, 1)
    first = probe.get_inputs()[0]
    dims = [args.batch_size, *(d if isinstance(d, int) and d > 0 else 1 for d in first.shape[1:])]
    feed = {first.name: np.random.default_rng(0).random(dims, dtype=np.float32)}
    layouts = {
        f"1 session x {args.threads} threads": [session(args.model, args.threads)],
        f"{args.threads} sessions x 1 thread": [session(args.model, 1) for _ in range(args.threads)],
    }
    print(
        f"batch {args.batch_size}, competitor {args.busy_share:.0%} of a core in {args.burst_ms} ms "
        f"bursts, median of {args.repeats} windows of {args.seconds:.0f} s"
    )
    print("| layout | alone infer/s | with competitor infer/s | kept |")
    print("|---|---|---|---|")
    for name, layout in layouts.items():
        alone, shared = [], []
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
            alone.append(measure(layout, feed, args, compete=False))
            shared.append(measure(layout, feed, args, compete=True))
        a, s = statistics.median(alone), statistics.median(shared)
        print(f"| {name} | {a:.1f} | {s:.1f} | {s / a:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
