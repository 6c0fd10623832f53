#!/usr/bin/env python3
"""Interleaved A/B comparison of server variants with perf_analyzer.

On a shared machine the same server measured twice an hour apart can differ by 5-10%, more than
most changes are worth. This runs every variant once per round, in a rotating order, for several
rounds, so that drift hits all of them alike, and reports medians and ratios to the first variant.

A variant is NAME=REPOSITORY, optionally followed by ,KEY=VALUE environment settings for that
server: another model configuration is another repository; another code tree is
PYTHONPATH=/path/to/its/src (e.g. a `git worktree` of the commit before a change).

Example:
  git worktree add /tmp/before HEAD~1
  python benchmarks/compare.py --model mobilenet_v2 --concurrency 1,16 --rounds 3 \\
      --variant before=examples/model_repository,PYTHONPATH=/tmp/before/src \\
      --variant after=examples/model_repository

On a machine with cores to spare, keep the load generator off the server's cores:
  taskset -c 4-11 python benchmarks/compare.py --server-cpus 0,1 ...
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from datetime import datetime

from bench_common import median, parse_int_list, write_json
from run_benchmarks import DEFAULT_PA, DEFAULT_SERVER_CMD, HERE, Server, log, run_perf_analyzer


def parse_variant(text: str) -> tuple[str, str, dict[str, str]]:
    """NAME=REPOSITORY[,KEY=VALUE...] -> (name, repository, environment)."""
    name, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not name or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME=REPOSITORY[,KEY=VALUE...], got {text!r}")
    env = {}
    for item in parts[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE after the repository, got {item!r}")
        env[key] = value
    return name, parts[0], env


def server_args(args: argparse.Namespace, repository: str, env: dict[str, str]) -> argparse.Namespace:
    """The settings run_benchmarks' Server and run_perf_analyzer read, for one variant."""
    prefix = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " if env else ""
    if args.server_cpus:
        prefix = f"taskset -c {shlex.quote(args.server_cpus)} {prefix}"
    return argparse.Namespace(
        model_repository=repository, model=args.model, model_version=args.model_version,
        server_cmd=prefix + DEFAULT_SERVER_CMD, http_url=None, grpc_url=None, server_pid=None,
        stop_timeout=15.0, perf_analyzer=args.perf_analyzer, pa_window_ms=args.pa_window_ms,
        pa_max_trials=args.pa_max_trials, pa_stability=args.pa_stability, shape=args.shape,
        pa_extra=shlex.split(args.pa_extra),
    )  # fmt: skip


def measure_round(args, variants, rnd: int, out_dir: str) -> list[dict]:
    """One round: each variant (in an order rotated by the round) at every concurrency."""
    results = []
    shift = rnd % len(variants)
    for name, repository, env in variants[shift:] + variants[:shift]:
        settings = server_args(args, repository, env)
        variant_dir = os.path.join(out_dir, name)
        os.makedirs(variant_dir, exist_ok=True)
        server = Server(settings, variant_dir)
        try:
            server.start()
            server.wait_ready(120.0)
            for conc in args.concurrency:
                res = run_perf_analyzer(
                    settings, server, args.protocol, args.batch_size, conc, rnd, variant_dir
                )
                results.append({"variant": name, "round": rnd, "concurrency": conc,
                                "throughput": res.get("throughput"),
                                "p50_ms": (res.get("latency_ms") or {}).get("p50"),
                                "error": res.get("error")})  # fmt: skip
        finally:
            server.stop()
    return results


def report(variants, results: list[dict], concurrency: list[int]) -> str:
    lines = ["| variant | concurrency | infer/s (median) | p50 ms (median) | infer/s ÷ first | p50 ÷ first | "
             "infer/s per round |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for conc in concurrency:
        base_thr = base_p50 = None
        for name, _, _ in variants:
            mine = [r for r in results if r["variant"] == name and r["concurrency"] == conc]
            thr = median(r["throughput"] for r in mine)
            p50 = median(r["p50_ms"] for r in mine)
            if base_thr is None:
                base_thr, base_p50 = thr, p50
            per_round = " ".join(f"{r['throughput']:.1f}" if r["throughput"] else "err" for r in mine)
            lines.append(
                f"| {name} | {conc} | {_num(thr)} | {_num(p50, '.3f')} | {_ratio(thr, base_thr)} | "
                f"{_ratio(p50, base_p50)} | {per_round} |"
            )
    return "\n".join(lines)


def _num(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        required=True,
        metavar="NAME=REPO[,KEY=VALUE...]",
        help="a server variant (give two or more)",
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-version", default="")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--concurrency", type=parse_int_list, default=[1, 16], help="default 1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--protocol", choices=("http", "grpc"), default="http")
    ap.add_argument("--shape", action="append", metavar="NAME:D1,D2")
    ap.add_argument("--perf-analyzer", default=DEFAULT_PA)
    ap.add_argument("--pa-window-ms", type=int, default=3000)
    ap.add_argument("--pa-max-trials", type=int, default=5)
    ap.add_argument("--pa-stability", type=int, default=50)
    ap.add_argument("--pa-extra", default="", help='e.g. "--shared-memory system"')
    ap.add_argument("--out-dir", help="default benchmarks/results/compare-<timestamp>")
    ap.add_argument(
        "--server-cpus",
        help="pin each server to these CPUs (taskset list, e.g. 0,1); start this script itself under "
        "`taskset -c <other cpus>` so that perf_analyzer, its child, runs apart from the server",
    )
    args = ap.parse_args(argv)
    if len(args.variant) < 2:
        ap.error("give at least two --variant")
    if not os.access(args.perf_analyzer, os.X_OK):
        ap.error(f"perf_analyzer not found at {args.perf_analyzer} (run benchmarks/setup_perf_analyzer.sh)")
    out_dir = args.out_dir or os.path.join(HERE, "results", datetime.now().strftime("compare-%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    results: list[dict] = []
    for rnd in range(args.rounds):
        log(f"round {rnd + 1}/{args.rounds}")
        results += measure_round(args, args.variant, rnd, out_dir)
    table = report(args.variant, results, args.concurrency)
    print(table)
    write_json(os.path.join(out_dir, "compare.json"), {"argv": sys.argv, "results": results, "table": table})
    failed = [r for r in results if r["error"]]
    for r in failed:
        log(f"{r['variant']} c={r['concurrency']} round {r['round'] + 1}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
