#!/usr/bin/env python3
"""Serve a model with its own config and with the config `modelport tune --write` chose, and compare.

Each round starts `modelport serve` on the repository twice (once plain, once with
`--model-config-name tuned`, in alternating order so drift hits both alike) and measures it over
HTTP with benchmarks/loadgen.py. The report gives, per concurrency, the median throughput and p99
of each variant, and whether the tuned one stays within --latency-budget-ms.

Example (after `modelport tune mobilenet_v2 --model-repository /tmp/repo --write`):
  python benchmarks/tune_check.py --model-repository /tmp/repo --model mobilenet_v2 \\
      --concurrency 1,4,16 --seconds 8 --rounds 2 --latency-budget-ms 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench_common import median, parse_int_list
from run_benchmarks import DEFAULT_SERVER_CMD, Server, log, run_loadgen

VARIANTS = {"own": "", "tuned": " --model-config-name tuned"}


def measure(args: argparse.Namespace, variant: str, rnd: int, out_dir: str) -> dict[int, dict]:
    """One server start of `variant`, measured at every concurrency: {concurrency: loadgen's result}."""
    options = argparse.Namespace(
        **vars(args), server_cmd=DEFAULT_SERVER_CMD + VARIANTS[variant], http_url=None, grpc_url=None,
        server_pid=None, model_version="", shape=None, stop_timeout=30,
    )
    folder = os.path.join(out_dir, f"{variant}-{rnd}")
    os.makedirs(folder)
    server = Server(options, folder)
    server.start()
    try:
        server.wait_ready(120)
        result = run_loadgen(options, server, "http", 1, rnd, folder)
    except RuntimeError as exc:  # the server did not start: this round of the variant has no figures
        log(f"{variant}: {exc}")
        return {}
    finally:
        server.stop()
    return {level["concurrency"]: level for level in result.get("levels", [])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup-seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency-budget-ms", type=float, default=None)
    args = ap.parse_args()
    out_dir = tempfile.mkdtemp(prefix="tune-check-")
    runs: dict[str, list[dict[int, dict]]] = {name: [] for name in VARIANTS}
    for rnd in range(args.rounds):
        order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            log(f"round {rnd + 1}/{args.rounds}: {variant}")
            runs[variant].append(measure(args, variant, rnd, out_dir))
    print(f"{args.model}: median of {args.rounds} rounds (HTTP, benchmarks/loadgen.py); results in {out_dir}")
    for concurrency in parse_int_list(args.concurrency):
        cells = []
        for variant, results in runs.items():
            levels = [r[concurrency] for r in results if concurrency in r]
            throughput = median([lv["throughput"] for lv in levels])
            p99 = median([lv["latency_ms"]["p99"] for lv in levels])
            if throughput is None or p99 is None:
                cells.append(f"{variant}: no measurement")
                continue
            within = "" if args.latency_budget_ms is None else (
                " (within budget)" if p99 <= args.latency_budget_ms else " (OVER budget)")
            cells.append(f"{variant}: {throughput:8.1f} infer/s  p99 {p99:7.2f} ms{within}")
        print(f"  c={concurrency:<3} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
