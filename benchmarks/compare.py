#!/usr/bin/env python3
"""Interleaved A/B comparison of server variants (modelport builds, the real Triton) with perf_analyzer.

On a shared machine the same server measured twice an hour apart can differ by 5-10%, more than
most changes are worth. This runs every variant once per round, in a rotating order, for several
rounds, so that drift hits all of them alike, and reports medians and ratios to the first variant.

A variant is NAME=REPOSITORY, optionally followed by ,KEY=VALUE settings:
  server=triton   serve REPOSITORY with the real tritonserver (the peer script, --triton-peer) instead of
                  modelport; it has the python backend only, so serve Python-backend models that both
                  servers run from the same model.py (benchmarks/models; see benchmarks/README.md)
  KEY=VALUE       any other key is an environment setting for that server: another model configuration
                  is another repository; another code tree is PYTHONPATH=/path/to/its/src (e.g. a
                  `git worktree` of the commit before a change)

Each server runs every --protocol at every --concurrency. Besides perf_analyzer's throughput and p50,
the report gives the server's CPU per inference: the CPU seconds of the server's whole process tree
(the server and its descendants, e.g. Triton's python backend stubs) over the whole perf_analyzer run,
divided by the inferences the server's own statistics (inference_count) counted over the same run.

Examples:
  git worktree add /tmp/before HEAD~1
  python benchmarks/compare.py --model mobilenet_v2 --concurrency 1,16 --rounds 3 \\
      --variant before=examples/model_repository,PYTHONPATH=/tmp/before/src \\
      --variant after=examples/model_repository

  python benchmarks/compare.py --model add_sub --protocol http,grpc --concurrency 1,4,16 \\
      --variant modelport=benchmarks/models --variant triton=benchmarks/models,server=triton

On a machine with cores to spare, keep the load generator off the server's cores:
  taskset -c 4-11 python benchmarks/compare.py --server-cpus 0,1 ...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime

from bench_common import median, parse_int_list, write_json
from run_benchmarks import (
    DEFAULT_PA,
    DEFAULT_SERVER_CMD,
    HERE,
    REPO_ROOT,
    Server,
    http_get,
    log,
    run_perf_analyzer,
)

SERVERS = ("modelport", "triton")
PROTOCOLS = ("http", "grpc")
TRITON_SERVER_ARGS = (
    "serve {repo} --http-port {http_port} --grpc-port {grpc_port} --metrics-port {metrics_port}"
)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    repository: str
    server: str = "modelport"
    env: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()  # extra server flags (flag=--grpc-stack=aio, once per flag)


def parse_variant(text: str) -> Variant:
    """NAME=REPOSITORY[,server=modelport|triton][,flag=--server-flag...][,KEY=VALUE...] -> Variant."""
    name, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not name or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME=REPOSITORY[,KEY=VALUE...], got {text!r}")
    server, env, flags = "modelport", [], []
    for item in parts[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE after the repository, got {item!r}")
        if key.lower() == "server":
            if value not in SERVERS:
                raise argparse.ArgumentTypeError(f"server= takes one of {', '.join(SERVERS)}, got {value!r}")
            server = value
        elif key.lower() == "flag":
            flags.append(value)
        else:
            env.append((key, value))
    return Variant(name, parts[0], server, tuple(env), tuple(flags))


def parse_protocols(text: str) -> list[str]:
    """'http,grpc' -> ['http', 'grpc']."""
    protocols = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise argparse.ArgumentTypeError(f"expected a list of {', '.join(PROTOCOLS)}, got {text!r}")
    return list(dict.fromkeys(protocols))


def default_triton_peer() -> str | None:
    """$MODELPORT_TRITON_PEER, else ../shared/peers/tritonserver.sh beside the repository if it is there."""
    if os.environ.get("MODELPORT_TRITON_PEER"):
        return os.environ["MODELPORT_TRITON_PEER"]
    path = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "peers", "tritonserver.sh"))
    return path if os.path.isfile(path) else None


def server_command(args: argparse.Namespace, variant: Variant, tmpdir: str | None) -> str:
    """The command template run_benchmarks' Server starts for one variant (pinned, with its environment).

    The peer script copies the repository into a folder of $TMPDIR that it never removes: `tmpdir` is
    a folder of this run's own for it.
    """
    env = variant.env
    if variant.server == "triton":
        command = f"bash {shlex.quote(_literal(os.path.abspath(args.triton_peer)))} {TRITON_SERVER_ARGS}"
        env = ((("TMPDIR", tmpdir),) if tmpdir else ()) + env
    else:
        command = DEFAULT_SERVER_CMD
    if variant.flags:
        command += " " + " ".join(shlex.quote(_literal(flag)) for flag in variant.flags)
    if env:
        assignments = " ".join(shlex.quote(_literal(f"{k}={v}")) for k, v in env)
        command = f"env {assignments} {command}"
    if args.server_cpus:
        command = f"taskset -c {shlex.quote(args.server_cpus)} {command}"
    return command


def _literal(text: str) -> str:
    """`text` as a literal in a Server command template (Server formats every token)."""
    return text.replace("{", "{{").replace("}", "}}")


def server_args(args: argparse.Namespace, variant: Variant, tmpdir: str | None = None) -> argparse.Namespace:
    """The settings run_benchmarks' Server and run_perf_analyzer read, for one variant."""
    return argparse.Namespace(
        model_repository=variant.repository, model=args.model, model_version=args.model_version,
        server_cmd=server_command(args, variant, tmpdir), http_url=None, grpc_url=None, server_pid=None,
        stop_timeout=15.0, perf_analyzer=args.perf_analyzer, pa_window_ms=args.pa_window_ms,
        pa_max_trials=args.pa_max_trials, pa_stability=args.pa_stability, shape=args.shape,
        pa_extra=shlex.split(args.pa_extra),
    )  # fmt: skip


def inference_count(server: Server, model: str, version: str) -> int | None:
    """The model's inference_count from the server's statistics (HTTP), or None."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
    status, body = http_get(f"http://{server.http}{path}", timeout=10)
    if status != 200:
        return None
    try:
        return sum(int(stats.get("inference_count", 0)) for stats in json.loads(body)["model_stats"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def measure_one(args, settings, server: Server, variant: Variant, protocol: str, conc: int, rnd: int,
                out_dir: str) -> dict:  # fmt: skip
    """One perf_analyzer run, with the server's CPU per inference over it."""
    before = inference_count(server, args.model, args.model_version)
    res = run_perf_analyzer(settings, server, protocol, args.batch_size, conc, rnd, out_dir)
    after = inference_count(server, args.model, args.model_version)
    inferences = after - before if before is not None and after is not None else None
    cpu_s = res.get("server_cpu_s")
    return {"variant": variant.name, "server": variant.server, "round": rnd, "protocol": protocol,
            "concurrency": conc, "throughput": res.get("throughput"),
            "p50_ms": (res.get("latency_ms") or {}).get("p50"), "server_cpu_s": cpu_s,
            "inferences": inferences, "pa_wall_s": res.get("wall_s"),
            "cpu_ms_per_infer": 1000.0 * cpu_s / inferences if cpu_s is not None and inferences else None,
            "error": res.get("error")}  # fmt: skip


def measure_variant(args, variant: Variant, rnd: int, out_dir: str) -> list[dict]:
    """Start one variant's server, run every protocol at every concurrency, stop it."""
    tmpdir = tempfile.mkdtemp(prefix="compare-triton-") if variant.server == "triton" else None
    settings = server_args(args, variant, tmpdir)
    variant_dir = os.path.join(out_dir, variant.name)
    os.makedirs(variant_dir, exist_ok=True)
    server = Server(settings, variant_dir)
    results = []
    try:
        server.start()
        server.wait_ready(120.0)
        for protocol in args.protocol:
            for conc in args.concurrency:
                results.append(measure_one(args, settings, server, variant, protocol, conc, rnd, variant_dir))
    except RuntimeError as exc:  # the server did not come up: its log tail says why
        log(f"{variant.name}: {exc}")
        error = str(exc).splitlines()[0]
        results = [{"variant": variant.name, "server": variant.server, "round": rnd, "protocol": protocol,
                    "concurrency": conc, "throughput": None, "p50_ms": None, "cpu_ms_per_infer": None,
                    "error": error} for protocol in args.protocol for conc in args.concurrency]  # fmt: skip
    finally:
        server.stop()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return results


def measure_round(args, variants: list[Variant], rnd: int, out_dir: str) -> list[dict]:
    """One round: each variant (in an order rotated by the round) at every protocol and concurrency."""
    shift = rnd % len(variants)
    results = []
    for variant in variants[shift:] + variants[:shift]:
        results += measure_variant(args, variant, rnd, out_dir)
    return results


def report(variants: list[Variant], results: list[dict], protocols: list[str], concurrency: list[int]) -> str:
    lines = ["| protocol | concurrency | variant | infer/s (median) | p50 ms (median) | "
             "server CPU ms/infer | infer/s ÷ first | p50 ÷ first | infer/s per round |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for protocol in protocols:
        for conc in concurrency:
            for i, variant in enumerate(variants):
                mine = [
                    r
                    for r in results
                    if r["variant"] == variant.name and r["protocol"] == protocol and r["concurrency"] == conc
                ]
                thr = median(r["throughput"] for r in mine)
                p50 = median(r["p50_ms"] for r in mine)
                cpu = median(r["cpu_ms_per_infer"] for r in mine)
                if i == 0:
                    base_thr, base_p50 = thr, p50
                per_round = " ".join(f"{r['throughput']:.1f}" if r["throughput"] else "err" for r in mine)
                lines.append(
                    f"| {protocol} | {conc} | {variant.name} | {_num(thr)} | {_num(p50, '.3f')} | "
                    f"{_num(cpu, '.3f')} | {_ratio(thr, base_thr)} | {_ratio(p50, base_p50)} | {per_round} |"
                )
    return "\n".join(lines)


NOTES = (
    "infer/s and p50: perf_analyzer's stable windows; medians over the rounds.",
    "server CPU ms/infer: CPU seconds of the server's process tree (server and all its descendants, "
    "from /proc) over the whole perf_analyzer run ÷ the inferences the server's statistics "
    "(inference_count) counted over that run; median over the rounds.",
)


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
        metavar="NAME=REPO[,server=triton][,KEY=VALUE...]",
        help="a server variant (give two or more); the first is the base of the ratios",
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-version", default="")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--concurrency", type=parse_int_list, default=[1, 16], help="default 1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--protocol",
        type=parse_protocols,
        default=["http"],
        help="http, grpc or both (http,grpc); default http",
    )
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
    ap.add_argument(
        "--triton-peer",
        default=default_triton_peer(),
        metavar="PATH",
        help="the script that runs tritonserver for server=triton variants (default: $MODELPORT_TRITON_PEER, "
        "else ../shared/peers/tritonserver.sh beside the repository)",
    )
    args = ap.parse_args(argv)
    if len(args.variant) < 2:
        ap.error("give at least two --variant")
    if len({v.name for v in args.variant}) < len(args.variant):
        ap.error("give every --variant its own NAME")
    if any(v.server == "triton" for v in args.variant) and not (
        args.triton_peer and os.path.isfile(args.triton_peer)
    ):
        ap.error(f"a server=triton variant needs the peer script (--triton-peer; got {args.triton_peer!r})")
    if not os.access(args.perf_analyzer, os.X_OK):
        ap.error(f"perf_analyzer not found at {args.perf_analyzer} (run benchmarks/setup_perf_analyzer.sh)")
    out_dir = args.out_dir or os.path.join(HERE, "results", datetime.now().strftime("compare-%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so that the running server is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results: list[dict] = []
    for rnd in range(args.rounds):
        log(f"round {rnd + 1}/{args.rounds}")
        results += measure_round(args, args.variant, rnd, out_dir)
    table = report(args.variant, results, args.protocol, args.concurrency)
    print(table + "\n\n" + "\n".join(f"* {note}" for note in NOTES))
    write_json(os.path.join(out_dir, "compare.json"), {"argv": sys.argv, "results": results, "table": table})
    failed = [r for r in results if r["error"]]
    for r in failed:
        log(f"{r['variant']} {r['protocol']} c={r['concurrency']} round {r['round'] + 1}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
