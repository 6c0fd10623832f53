#!/usr/bin/env python3
"""One-shot benchmark: raw onnxruntime vs. the same model behind the server.

In one run, for one model of a model repository:

  1. raw_ort.py on the model file (server not running yet: it has the machine
     to itself);
  2. start the server as a subprocess on free loopback ports (default command:
     ``python -m modelport serve --model-repository REPO --http-port P1
     --grpc-port P2 --metrics-port P3``) and wait for GET /v2/health/ready
     (then /v2/models/MODEL/ready) to answer 200;
  3. loadgen.py (own process) for each protocol x batch size, all concurrency
     levels in one process;
  4. perf_analyzer (if set up, see setup_perf_analyzer.sh) for each protocol x
     batch size x concurrency, parsing its CSV;
  5. stop the server by its PID (SIGTERM, then SIGKILL of its process group
     after a grace period);
  6. print a markdown table with medians over ``--repeats`` runs and the
     served / raw throughput ratios.

Steps 3-4 run ``--repeats`` rounds (each round covers every configuration once,
so slow drifts of a noisy machine spread over all configurations).

Any KServe v2 / Triton server works: pass ``--server-cmd`` (a template with
{python} {repo} {model} {http_port} {grpc_port} {metrics_port}) or point at a
running server with ``--http-url/--grpc-url`` (then nothing is started or
stopped).

Example:
  python benchmarks/run_benchmarks.py --model-repository examples/models \
      --model simple --batch-sizes 1,8 --concurrency 1,8 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_common import (  # noqa: E402
    machine_info,
    median,
    parse_int_list,
    process_tree_cpu_seconds,
    summarize,
    write_json,
)

DEFAULT_SERVER_CMD = (
    "{python} -m modelport serve --model-repository {repo} "
    "--http-address 127.0.0.1 --grpc-address 127.0.0.1 --metrics-address 127.0.0.1 "
    "--http-port {http_port} --grpc-port {grpc_port} --metrics-port {metrics_port}"
)
DEFAULT_PA = os.path.join(HERE, ".tools", "perf_analyzer")


def log(msg: str) -> None:
    print(f"[run_benchmarks {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(text: str, n: int = 12) -> str:
    lines = (text or "").strip().splitlines()
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------ helpers
def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def tcp_reachable(hostport: str, timeout: float) -> bool:
    host, _, port = hostport.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)


def resolve_model_file(repo: str, model: str, version: str) -> str | None:
    mdir = os.path.join(repo, model)
    filename = "model.onnx"
    cfg_path = os.path.join(mdir, "config.pbtxt")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            m = re.search(r'default_model_filename\s*:\s*"([^"]+)"', f.read())
        if m:
            filename = m.group(1)
    if version:
        versions = [version]
    else:
        try:
            versions = sorted((d for d in os.listdir(mdir) if d.isdigit()), key=int, reverse=True)
        except OSError:
            return None
    for v in versions:
        path = os.path.join(mdir, v, filename)
        if os.path.isfile(path):
            return path
    return None


def _version_count(args: argparse.Namespace) -> int:
    mdir = os.path.join(args.model_repository, args.model)
    return sum(1 for d in os.listdir(mdir) if d.isdigit()) if os.path.isdir(mdir) else 0


class Server:
    """The server under test, started as a subprocess (or an external one)."""

    def __init__(self, args, out_dir):
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = args.server_pid
        self.log_path = os.path.join(out_dir, "server.log")
        self.command: list[str] | None = None
        if args.http_url:
            self.http = args.http_url
            self.grpc = args.grpc_url
            self.ports = None
        else:
            p1, p2, p3 = free_ports(3)
            self.ports = {"http_port": p1, "grpc_port": p2, "metrics_port": p3}
            self.http = f"127.0.0.1:{p1}"
            self.grpc = f"127.0.0.1:{p2}"

    def start(self) -> None:
        if self.ports is None:
            log(f"using external server http={self.http} grpc={self.grpc} (not started/stopped here)")
            return
        fields = dict(self.ports, python=sys.executable, repo=os.path.abspath(self.args.model_repository),
                      model=self.args.model)
        self.command = [tok.format(**fields) for tok in shlex.split(self.args.server_cmd)]
        env = dict(os.environ)
        src = os.path.join(REPO_ROOT, "src")
        if os.path.isdir(os.path.join(src, "modelport")):
            env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log(f"starting server: {shlex.join(self.command)} (log: {self.log_path})")
        # The server keeps its own copy of the log descriptor; this process needs none after Popen.
        with open(self.log_path, "wb") as server_log:
            self.proc = subprocess.Popen(self.command, stdout=server_log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.http}/v2/health/ready"
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode} before becoming ready:\n"
                                   f"{self.log_tail()}")
            status, _ = http_get(url)
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout:.0f}s (last status {status}):\n"
                                   f"{self.log_tail()}")
            time.sleep(0.25)
        started = time.monotonic()
        murl = f"http://{self.http}/v2/models/{self.args.model}/ready"
        while True:
            status, _ = http_get(murl)
            if status == 200:
                break
            if time.monotonic() > deadline:
                log(f"warning: {murl} still answers {status}; continuing anyway")
                break
            time.sleep(0.25)
        log(f"server ready (model ready after {time.monotonic() - started:.1f}s more)")

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return tail(f.read().decode("utf-8", "replace"), 30)
        except OSError:
            return ""

    def cpu_seconds(self) -> float | None:
        return process_tree_cpu_seconds(self.pid) if self.pid else None

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            log(f"stopping server pid {proc.pid} (SIGTERM)")
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=self.args.stop_timeout)
            except subprocess.TimeoutExpired:
                log(f"server pid {proc.pid} still alive after {self.args.stop_timeout}s: "
                    "SIGKILL to its group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        log(f"server exited with code {proc.returncode}")
        # Leftover children in the server's own process group (it was started
        # in a new session, so the group id is its pid).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            log("killed leftover processes in the server's process group")
        except (ProcessLookupError, PermissionError):
            pass


def run_child(cmd: list[str], timeout: float) -> tuple[int, str, str, dict]:
    """Run a driver process; returns (rc, stdout, stderr, usage) with its CPU use."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        rc, out, err = cp.returncode, cp.stdout, cp.stderr
    except subprocess.TimeoutExpired as exc:
        rc = -9
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")) + \
            f"\n(killed after {timeout:.0f}s timeout)"
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, out, err, {"wall_s": wall, "cpu_s": cpu}


# ------------------------------------------------------------------ drivers
def run_raw(args, model_file, out_dir) -> dict | None:
    path = os.path.join(out_dir, "raw_ort.json")
    cmd = [sys.executable, os.path.join(HERE, "raw_ort.py"), "--model", model_file,
           "--batch-sizes", args.raw_batch_sizes or args.batch_sizes, "--seconds", str(args.raw_seconds),
           "--repeats", str(args.repeats), "--intra-op-threads", str(args.intra_op_threads),
           "--json", path]
    for s in args.shape or ():
        cmd += ["--shape", s]
    log(f"raw onnxruntime: {shlex.join(cmd)}")
    n_bs = len(parse_int_list(args.raw_batch_sizes or args.batch_sizes))
    timeout = 120 + n_bs * (2 + args.raw_seconds * args.repeats) * 2
    rc, out, err, _ = run_child(cmd, timeout)
    sys.stderr.write(out)
    if rc != 0:
        log(f"raw_ort.py failed (rc {rc}):\n{tail(err)}")
        return None
    with open(path) as f:
        return json.load(f)


def run_loadgen(args, server, protocol, bs, rep, out_dir) -> dict:
    url = server.http if protocol == "http" else server.grpc
    path = os.path.join(out_dir, f"loadgen_{protocol}_b{bs}_r{rep}.json")
    cmd = [sys.executable, os.path.join(HERE, "loadgen.py"), "--url", url, "--protocol", protocol,
           "--model", args.model, "--batch-size", str(bs), "--concurrency", args.concurrency,
           "--seconds", str(args.seconds), "--warmup-seconds", str(args.warmup_seconds), "--json", path]
    if args.model_version:
        cmd += ["--model-version", args.model_version]
    if server.pid:
        cmd += ["--server-pid", str(server.pid)]
    for s in args.shape or ():
        cmd += ["--shape", s]
    n = len(parse_int_list(args.concurrency))
    timeout = 120 + n * (args.warmup_seconds + args.seconds + 40)
    rc, out, err, _ = run_child(cmd, timeout)
    sys.stderr.write(out)
    if not os.path.exists(path) or rc not in (0, 1):
        log(f"loadgen {protocol} b{bs} failed (rc {rc}):\n{tail(err)}")
        return {"error": tail(err, 1) or f"rc {rc}"}
    if rc == 1:
        log(f"loadgen {protocol} b{bs}: some level had no successful request or was aborted:\n{tail(err)}")
    with open(path) as f:
        return json.load(f)


def parse_pa_csv(path: str, concurrency: int) -> dict | None:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    for row in rows:
        try:
            if int(float(row.get("Concurrency", "nan"))) != concurrency:
                continue
        except ValueError:
            continue

        def us_to_ms(key, row=row):
            v = row.get(key)
            return float(v) / 1000.0 if v not in (None, "") else None

        return {
            "throughput": float(row["Inferences/Second"]),
            "latency_ms": {"p50": us_to_ms("p50 latency"), "p90": us_to_ms("p90 latency"),
                           "p95": us_to_ms("p95 latency"), "p99": us_to_ms("p99 latency"),
                           "mean": us_to_ms("Avg latency")},
            "csv_row": row,
        }
    return None


def run_perf_analyzer(args, server, protocol, bs, conc, rep, out_dir) -> dict:
    url = server.http if protocol == "http" else server.grpc
    csv_path = os.path.join(out_dir, f"pa_{protocol}_b{bs}_c{conc}_r{rep}.csv")
    cmd = [args.perf_analyzer, "-m", args.model, "-u", url, "-i", protocol, "-b", str(bs),
           "--concurrency-range", f"{conc}:{conc}", "-p", str(args.pa_window_ms),
           "-r", str(args.pa_max_trials), "-s", str(args.pa_stability), "-f", csv_path,
           "-v"]  # -v adds one "Pass [i]" line per window (used when unstable)
    if args.model_version:
        cmd += ["-x", args.model_version]
    for s in args.shape or ():
        cmd += ["--shape", s]
    cmd += args.pa_extra
    timeout = 60 + args.pa_window_ms / 1000.0 * (args.pa_max_trials + 2) * 1.5
    srv0 = server.cpu_seconds()
    rc, out, err, usage = run_child(cmd, timeout)
    srv1 = server.cpu_seconds()
    with open(csv_path + ".log", "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n(rc {rc})\n{out}\n{err}")
    res = {"protocol": protocol, "batch_size": bs, "concurrency": conc, "rc": rc, "command": shlex.join(cmd)}
    parsed = parse_pa_csv(csv_path, conc) if rc == 0 else None
    passes = [float(x) for x in re.findall(r"Pass \[\d+\] throughput: ([0-9.eE+-]+) infer/sec", out)]
    res["passes_throughput"] = passes
    res["wall_s"] = usage["wall_s"]
    if srv0 is not None and srv1 is not None:
        res["server_cpu_s"] = srv1 - srv0  # the server's process tree over the whole perf_analyzer run
    if parsed is None:
        res["error"] = tail(out + "\n" + err, 6) or f"rc {rc}"
        if passes and "stable" in res["error"]:
            spread = 100.0 * (max(passes) - min(passes)) / max(passes) if max(passes) else 0.0
            res["error"] += (f" [{len(passes)} windows: median {median(passes):.1f} infer/s, "
                             f"min {min(passes):.1f}, max {max(passes):.1f}, spread {spread:.0f}%]")
        log(f"perf_analyzer {protocol} b{bs} c{conc} failed (rc {rc}): {res['error']}")
        return res
    res.update(parsed)
    wall = usage["wall_s"]
    res["cpu_pct"] = {"client": 100.0 * usage["cpu_s"] / wall if wall else None}
    if srv0 is not None and srv1 is not None and wall:
        res["cpu_pct"]["server"] = 100.0 * (srv1 - srv0) / wall
    log(f"perf_analyzer {protocol} b{bs} c{conc}: {res['throughput']:.1f} infer/s "
        f"p50 {res['latency_ms']['p50']:.3f} ms p99 {res['latency_ms']['p99']:.3f} ms")
    return res


def pa_version(path: str) -> str | None:
    try:
        cp = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return cp.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def server_batching(server, model) -> int | None:
    """max_batch_size from the config endpoint (None if unavailable)."""
    status, body = http_get(f"http://{server.http}/v2/models/{model}/config", timeout=10)
    if status != 200:
        return None
    try:
        return int(json.loads(body).get("max_batch_size", 0) or 0)
    except (ValueError, AttributeError):
        return None


# ------------------------------------------------------------------ report
def fnum(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


def build_rows(raw, lg_runs, pa_runs, protocol_order=("http", "grpc")):
    raw_by_bs, best_raw = {}, None
    if raw:
        for r in raw["results"]:
            raw_by_bs[r["batch_size"]] = r
        best_raw = raw["best"]["throughput"]
    rows = []
    for bs, r in sorted(raw_by_bs.items()):
        thr = r["throughput"]
        rows.append({
            "config": f"raw onnxruntime b={bs}", "driver": "raw", "protocol": "in-process", "batch_size": bs,
            "concurrency": 1, "throughput": thr["median"], "min": thr["min"], "max": thr["max"],
            "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
            "vs_raw_same_bs": 1.0, "vs_best_raw": ratio(thr["median"], best_raw),
            "server_cpu": None, "client_cpu": r.get("cpu_pct"), "errors": 0, "runs": len(thr["runs"]),
        })

    def add(driver, key, items):
        proto, bs, conc = key
        thr = summarize(i["throughput"] for i in items)
        raw_same = raw_by_bs.get(bs, {}).get("throughput", {}).get("median")
        rows.append({
            "config": f"{driver} {proto} b={bs} c={conc}", "driver": driver, "protocol": proto,
            "batch_size": bs, "concurrency": conc, "throughput": thr["median"], "min": thr["min"],
            "max": thr["max"], "p50": median(i["latency_ms"]["p50"] for i in items),
            "p99": median(i["latency_ms"]["p99"] for i in items),
            "vs_raw_same_bs": ratio(thr["median"], raw_same), "vs_best_raw": ratio(thr["median"], best_raw),
            "server_cpu": median(i.get("cpu_pct", {}).get("server") for i in items),
            "client_cpu": median(i.get("cpu_pct", {}).get("client", i.get("cpu_pct", {}).get("loadgen"))
                                 for i in items),
            "errors": sum(i.get("errors", 0) for i in items), "runs": len(items),
        })

    for driver, runs in (("loadgen", lg_runs), ("perf_analyzer", pa_runs)):
        groups: dict = {}
        for item in runs:
            if item.get("throughput") is None:
                continue
            groups.setdefault((item["protocol"], item["batch_size"], item["concurrency"]), []).append(item)
        order = {p: i for i, p in enumerate(protocol_order)}
        for key in sorted(groups, key=lambda k: (order.get(k[0], 99), k[1], k[2])):
            add(driver, key, groups[key])
    return rows


def render_markdown(rows, notes, failures) -> str:
    head = ("| config | infer/s (median) | min \N{EN DASH} max | p50 ms | p99 ms | ÷ raw same batch "
            "| ÷ best raw | server CPU % | client CPU % | errors | runs |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['config']} | {fnum(r['throughput'])} | {fnum(r['min'])} \N{EN DASH} {fnum(r['max'])} | "
            f"{fnum(r['p50'], '.3f')} | {fnum(r['p99'], '.3f')} | {fnum(r['vs_raw_same_bs'], '.3f')} | "
            f"{fnum(r['vs_best_raw'], '.3f')} | {fnum(r['server_cpu'], '.0f')} | "
            f"{fnum(r['client_cpu'], '.0f')} | {r['errors']} | {r['runs']} |"
        )
    out = ["## Benchmark results", ""] + [f"- {n}" for n in notes] + [""] + lines
    if failures:
        short = [f if len(f) <= 240 else f[:237] + "..." for f in failures]
        out += ["", "Skipped or failed:", ""] + [f"- {f}" for f in short]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-version", default="")
    ap.add_argument("--model-file", help="ONNX file for the raw baseline (default: found in the repository)")
    ap.add_argument("--batch-sizes", default="1,8", help="raw and served batch sizes (default 1,8)")
    ap.add_argument("--raw-batch-sizes", default=None,
                    help="raw onnxruntime batch sizes, to find the best raw batch (default: --batch-sizes)")
    ap.add_argument("--concurrency", default="1,8", help="client concurrency levels (default 1,8)")
    ap.add_argument("--protocols", default="http,grpc", help="loadgen protocols (default http,grpc)")
    ap.add_argument("--seconds", type=float, default=5.0, help="loadgen window per level (default 5)")
    ap.add_argument("--warmup-seconds", type=float, default=1.0, help="loadgen warm-up per level (default 1)")
    ap.add_argument("--raw-seconds", type=float, default=3.0, help="raw_ort window (default 3)")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of every measurement (default 3)")
    ap.add_argument("--intra-op-threads", type=int, default=0,
                    help="raw_ort session threads; match the server's setting (default 0 = ORT default)")
    ap.add_argument("--shape", action="append", metavar="NAME:D1,D2", help="passed to every driver")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--skip-loadgen", action="store_true")
    ap.add_argument("--perf-analyzer", default="auto",
                    help=f"path, 'auto' (= {os.path.relpath(DEFAULT_PA, REPO_ROOT)} if present) or 'none'")
    ap.add_argument("--pa-protocols", default=None, help="perf_analyzer protocols (default: --protocols)")
    ap.add_argument("--pa-window-ms", type=int, default=2000, help="perf_analyzer -p (default 2000)")
    ap.add_argument("--pa-max-trials", type=int, default=10, help="perf_analyzer -r (default 10)")
    ap.add_argument("--pa-stability", type=int, default=20,
                    help="perf_analyzer -s, allowed %% spread between windows (default 20; noisy machine)")
    ap.add_argument("--pa-extra", default="", help="extra perf_analyzer arguments (one shell-quoted string)")
    ap.add_argument("--server-cmd", default=DEFAULT_SERVER_CMD,
                    help="server command template (placeholders: {python} {repo} {model} "
                         "{http_port} {grpc_port} {metrics_port})")
    ap.add_argument("--server-timeout", type=float, default=120.0, help="seconds to wait for readiness")
    ap.add_argument("--stop-timeout", type=float, default=15.0, help="grace period after SIGTERM")
    ap.add_argument("--http-url", help="use an already running server (host:port); nothing is started")
    ap.add_argument("--grpc-url", help="gRPC host:port of the running server (with --http-url)")
    ap.add_argument("--server-pid", type=int, help="PID of the running server, for CPU accounting")
    ap.add_argument("--out-dir", help="where JSON/CSV/logs go (default benchmarks/results/<timestamp>)")
    ap.add_argument("--markdown", help="also write the markdown report here")
    args = ap.parse_args(argv)
    args.pa_extra = shlex.split(args.pa_extra)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    pa_protocols = [p.strip() for p in (args.pa_protocols or args.protocols).split(",") if p.strip()]
    for p in protocols + pa_protocols:
        if p not in ("http", "grpc"):
            ap.error(f"unknown protocol {p!r}")
    if args.http_url and "grpc" in protocols + pa_protocols and not args.grpc_url:
        ap.error("--grpc-url is needed with --http-url when gRPC is benchmarked")
    batch_sizes = parse_int_list(args.batch_sizes)
    concurrencies = parse_int_list(args.concurrency)

    if args.perf_analyzer == "auto":
        args.perf_analyzer = DEFAULT_PA if os.access(DEFAULT_PA, os.X_OK) else None
        if args.perf_analyzer is None:
            log("perf_analyzer not set up (run benchmarks/setup_perf_analyzer.sh); skipping it")
    elif args.perf_analyzer == "none":
        args.perf_analyzer = None

    out_dir = args.out_dir or os.path.join(HERE, "results", datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    machine_before = machine_info()
    failures: list[str] = []

    # 1. raw baseline, alone on the machine
    raw = None
    model_file = args.model_file or resolve_model_file(args.model_repository, args.model, args.model_version)
    if model_file and not args.model_file and not args.model_version and _version_count(args) > 1:
        # Unversioned requests may go to another version (a traffic split, or the example classifier's
        # policy keeping them on version 1): name the raw file's version so both measure the same model.
        args.model_version = os.path.basename(os.path.dirname(model_file))
        log(f"{args.model} has several versions: measuring version {args.model_version}")
    if args.skip_raw:
        pass
    elif model_file is None:
        log("no ONNX file found for the raw baseline (use --model-file); ratios will be n/a")
        failures.append("raw: model file not found")
    else:
        raw = run_raw(args, model_file, out_dir)
        if raw is None:
            failures.append("raw_ort.py failed")

    # 2-5. served measurements
    server = Server(args, out_dir)
    lg_runs: list[dict] = []
    pa_runs: list[dict] = []
    pa_ver = pa_version(args.perf_analyzer) if args.perf_analyzer else None

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.start()
        server.wait_ready(args.server_timeout)
        if "grpc" in protocols + pa_protocols and not tcp_reachable(server.grpc, 10.0):
            log(f"gRPC endpoint {server.grpc} refuses connections; skipping gRPC runs")
            failures.append(f"gRPC skipped: nothing listens on {server.grpc}")
            protocols = [p for p in protocols if p != "grpc"]
            pa_protocols = [p for p in pa_protocols if p != "grpc"]
        served_bs = list(batch_sizes)
        mbs = server_batching(server, args.model)
        if mbs is not None:
            allowed = [b for b in served_bs if (b == 1 if mbs == 0 else b <= mbs)]
            if allowed != served_bs:
                skipped = sorted(set(served_bs) - set(allowed))
                log(f"max_batch_size is {mbs}: skipping served batch sizes {skipped}")
                failures.append(f"served batch sizes {skipped} skipped (max_batch_size {mbs})")
            served_bs = allowed
        for rep in range(args.repeats):
            log(f"round {rep + 1}/{args.repeats}")
            if not args.skip_loadgen:
                for proto in protocols:
                    for bs in served_bs:
                        res = run_loadgen(args, server, proto, bs, rep, out_dir)
                        if "error" in res:
                            failures.append(f"loadgen {proto} b{bs} round {rep + 1}: {res['error']}")
                            continue
                        for level in res["levels"]:
                            if level["aborted"] or level["requests"] == 0:
                                failures.append(
                                    f"loadgen {proto} b{bs} c{level['concurrency']} round {rep + 1}: "
                                    f"{level['errors_total']} errors {list(level['error_kinds'])[:1]}"
                                )
                                continue
                            lg_runs.append(dict(level, protocol=proto))
            if args.perf_analyzer:
                for proto in pa_protocols:
                    for bs in served_bs:
                        for conc in concurrencies:
                            res = run_perf_analyzer(args, server, proto, bs, conc, rep, out_dir)
                            if "error" in res:
                                failures.append(f"perf_analyzer {proto} b{bs} c{conc} round {rep + 1}: "
                                                f"{res['error'].splitlines()[-1] if res['error'] else ''}")
                                res["throughput"] = None  # not aggregated
                            pa_runs.append(res)
    except KeyboardInterrupt:
        log("interrupted; stopping the server")
        failures.append("interrupted")
    except RuntimeError as exc:
        log(str(exc))
        failures.append(str(exc).splitlines()[0])
    finally:
        server.stop()

    # 6. report
    rows = build_rows(raw, lg_runs, pa_runs, protocols + [p for p in pa_protocols if p not in protocols])
    m = machine_info()
    cores = m.get("affinity_cpus", m.get("cpu_count"))
    notes = [
        f"model `{args.model}` from `{args.model_repository}`; raw file `{model_file}`",
        f"medians over {args.repeats} repeats; loadgen window {args.seconds}s "
        f"(+{args.warmup_seconds}s warm-up), raw window {args.raw_seconds}s, "
        f"perf_analyzer -p {args.pa_window_ms} ms -s {args.pa_stability}",
        f"machine: {cores} usable cores; load average before {machine_before.get('loadavg')}, "
        f"after {m.get('loadavg')}",
        "raw onnxruntime ran alone (server not started yet), intra-op threads "
        f"{args.intra_op_threads or 'ORT default'}; served runs share the same {cores} cores between "
        "the server and the load generator (loadgen.py / perf_analyzer run on the same machine)",
        "CPU % = CPU time / wall time from /proc and rusage (100 = one core busy): server = server process "
        "tree during the measured window (loadgen) or the whole perf_analyzer run; client = the load "
        "generator process (for raw rows: the raw_ort.py process itself)",
        "÷ raw same batch = served infer/s ÷ raw onnxruntime infer/s at that batch size; ÷ best raw = "
        "÷ the best raw infer/s over all batch sizes",
    ]
    if pa_ver:
        notes.append(
            f"perf_analyzer: {pa_ver} ({args.perf_analyzer}), sync mode, one thread per concurrent request"
        )
    if server.command:
        notes.append(f"server command: `{shlex.join(server.command)}`")
    md = render_markdown(rows, notes, failures)
    print(md)
    summary = {
        "tool": "run_benchmarks", "started": started, "duration_s": time.time() - started,
        "args": {k: v for k, v in vars(args).items()}, "server_command": server.command,
        "machine_before": machine_before, "machine_after": m, "perf_analyzer_version": pa_ver,
        "rows": rows, "raw": raw, "loadgen_runs": lg_runs, "perf_analyzer_runs": pa_runs,
        "failures": failures, "notes": notes,
    }
    write_json(os.path.join(out_dir, "summary.json"), summary)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    log(f"artifacts in {out_dir}")
    served_ok = bool(lg_runs or [r for r in pa_runs if "error" not in r])
    return 0 if served_ok else 1


if __name__ == "__main__":
    sys.exit(main())
