"""Interleaved perf_analyzer benchmark of the floor servers in this folder.

  python bench.py [--rounds 2] [--conc 1,4,16] [--stacks name,name,...] [--out data]

For each round, every selected stack (rotated order per round) is started on a
fresh port, checked with ServerLive, then perf_analyzer runs at each concurrency
(`-m add_sub -i grpc --concurrency-range C:C -p 2000 -s 1000 -r 3`). Around each
perf_analyzer run we read the server's CPU seconds (/proc/PID/stat utime+stime,
which sums all its threads) and its ModelInfer count (ModelStatistics
inference_count), so CPU ms/infer = dCPU / dCount over the whole run.
perf_analyzer's own CPU (os.wait4 rusage) is recorded too: it shares the 2 cores.
Before each run it waits (up to --quiet-wait s) while someone else runs perf_analyzer/loadgen,
and re-runs (up to --retries) when other processes used more than --max-foreign cores
(machine busy time from /proc/stat minus server and perf_analyzer CPU).
Raw rows go to OUT/raw.jsonl; OUT/summary.md has the medians.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable
PA = os.path.join(REPO, "benchmarks", ".tools", "perf_analyzer")
TICK = os.sysconf("SC_CLK_TCK")

A, SY, H2, RH = "aio_server.py", "sync_server.py", "h2_server.py", "rawh2_server.py"
STACKS = {
    "aio-typed-asyncio": [A, "--mode", "typed", "--loop", "asyncio"],
    "aio-typed-uvloop": [A, "--mode", "typed", "--loop", "uvloop"],
    "aio-raw-uvloop": [A, "--mode", "raw", "--loop", "uvloop"],
    "aio-raw-asyncio": [A, "--mode", "raw", "--loop", "asyncio"],
    "aio-raw-uvloop-opts": [A, "--mode", "raw", "--loop", "uvloop",
                            "--opt", "grpc.so_reuseport=0", "--opt", "grpc.max_concurrent_streams=64",
                            "--opt", "grpc.http2.max_frame_size=1048576",
                            "--opt", "grpc.optimization_target=throughput"],
    "aio-raw-uvloop-throughput": [A, "--mode", "raw", "--loop", "uvloop",
                                  "--opt", "grpc.optimization_target=throughput"],
    "aio-raw-uvloop-streams64": [A, "--mode", "raw", "--loop", "uvloop",
                                 "--opt", "grpc.max_concurrent_streams=64"],
    "sync-typed-w1": [SY, "--mode", "typed", "--workers", "1"],
    "sync-typed-w4": [SY, "--mode", "typed", "--workers", "4"],
    "sync-typed-w16": [SY, "--mode", "typed", "--workers", "16"],
    "sync-raw-w1": [SY, "--mode", "raw", "--workers", "1"],
    "sync-raw-w4": [SY, "--mode", "raw", "--workers", "4"],
    "sync-raw-w16": [SY, "--mode", "raw", "--workers", "16"],
    "sync-raw-w16-opts": [SY, "--mode", "raw", "--workers", "16", "--max-rpcs", "64",
                          "--opt", "grpc.so_reuseport=0", "--opt", "grpc.max_concurrent_streams=64",
                          "--opt", "grpc.http2.max_frame_size=1048576",
                          "--opt", "grpc.optimization_target=throughput"],
    "sync-raw-w4-opts": [SY, "--mode", "raw", "--workers", "4", "--max-rpcs", "64",
                         "--opt", "grpc.so_reuseport=0", "--opt", "grpc.max_concurrent_streams=64",
                         "--opt", "grpc.http2.max_frame_size=1048576",
                         "--opt", "grpc.optimization_target=throughput"],
    "sync-raw-w4-throughput": [SY, "--mode", "raw", "--workers", "4",
                               "--opt", "grpc.optimization_target=throughput"],
    "h2-uvloop": [H2, "--loop", "uvloop"],
    "h2-asyncio": [H2, "--loop", "asyncio"],
    "rawh2-uvloop": [RH, "--loop", "uvloop"],
    "rawh2-asyncio": [RH, "--loop", "asyncio"],
    "rawh2-uvloop-nohcache": [RH, "--loop", "uvloop", "--no-hcache"],
}

# the default set (the full first comparison); the option ablations are opt-in
DEFAULT = [n for n in STACKS if n not in ("aio-raw-uvloop-throughput", "aio-raw-uvloop-streams64",
                                          "sync-raw-w4-opts", "sync-raw-w4-throughput")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)


def machine_busy_s():
    """Total non-idle CPU seconds of the machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK  # minus idle, iowait


def foreign_pa():
    """PIDs of perf_analyzer / loadgen processes someone else is running."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read()
            except OSError:
                continue
            if (b"perf_analyzer" in cmd or b"loadgen" in cmd) and b"bench.py" not in cmd:
                out.append(int(d))
    return out


def wait_quiet(max_s):
    t0 = time.time()
    while foreign_pa() and time.time() - t0 < max_s:
        time.sleep(1)
    return time.time() - t0


def infer_count(client):
    st = client.get_inference_statistics("add_sub")
    return st.model_stats[0].inference_count


def start(name, port):
    argv = [PY, os.path.join(HERE, STACKS[name][0]), str(port)] + STACKS[name][1:]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    import tritonclient.grpc as g
    c = g.InferenceServerClient(f"127.0.0.1:{port}")
    for _ in range(100):
        try:
            if c.is_server_live():
                return p, c
        except Exception:
            time.sleep(0.1)
        if p.poll() is not None:
            raise RuntimeError(f"{name} died: {p.stderr.read().decode()[-2000:]}")
    raise RuntimeError(f"{name} not live")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_pa(port, conc, window_ms, log_path):
    cmd = [PA, "-m", "add_sub", "-i", "grpc", "-u", f"127.0.0.1:{port}",
           "--concurrency-range", f"{conc}:{conc}", "-p", str(window_ms), "-s", "1000", "-r", "3"]
    with open(log_path, "w") as lf:
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            p.returncode = 0
        wall = time.time() - t0
    out = open(log_path).read()
    m = re.search(r"Concurrency: \d+, throughput: ([0-9.]+) infer/sec, latency (\d+) usec", out)
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": wall,
            "pa_cpu_s": ru.ru_utime + ru.ru_stime,
            "throughput": float(m.group(1)) if m else None,
            "latency_us": int(m.group(2)) if m else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conc", default="1,4,16")
    ap.add_argument("--stacks", default=",".join(DEFAULT))
    ap.add_argument("--window-ms", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(HERE, "data"))
    ap.add_argument("--round-offset", type=int, default=0,
                    help="number the rounds from here (to add rounds to an existing OUT)")
    ap.add_argument("--retries", type=int, default=2, help="re-runs when others loaded the machine")
    ap.add_argument("--max-foreign", type=float, default=0.25,
                    help="foreign CPU (cores) above which a run is retried")
    ap.add_argument("--quiet-wait", type=float, default=90,
                    help="max seconds to wait for others' perf_analyzer/loadgen to finish")
    ap.add_argument("--summarize-only", action="store_true", help="rewrite OUT/summary.md from OUT/raw.jsonl")
    a = ap.parse_args()
    names = a.stacks.split(",")
    concs = [int(x) for x in a.conc.split(",")]
    os.makedirs(a.out, exist_ok=True)
    raw_path = os.path.join(a.out, "raw.jsonl")
    rows = []
    for rnd in range(a.round_offset, a.round_offset + (0 if a.summarize_only else a.rounds)):
        k = rnd % len(names)
        order = names[k:] + names[:k]
        if rnd % 2:
            order = order[::-1]
        for name in order:
            port = free_port()
            p, client = start(name, port)
            try:
                for conc in concs:
                    for attempt in range(a.retries + 1):
                        waited = wait_quiet(a.quiet_wait)
                        n0, c0, m0 = infer_count(client), cpu_s(p.pid), machine_busy_s()
                        r = run_pa(port, conc, a.window_ms,
                                   os.path.join(a.out, f"pa_{name}_c{conc}_r{rnd}.log"))
                        c1, n1, m1 = cpu_s(p.pid), infer_count(client), machine_busy_s()
                        # CPU used by everything except this server and this perf_analyzer
                        foreign = max(0.0, (m1 - m0) - (c1 - c0) - r["pa_cpu_s"]) / r["wall_s"]
                        if foreign < a.max_foreign or attempt == a.retries:
                            break
                        print(f"   {name} c{conc}: foreign load {100 * foreign:.0f}% of a core, retrying",
                              flush=True)
                    r.update(stack=name, conc=conc, round=rnd, server_cpu_s=c1 - c0, count=n1 - n0,
                             cpu_ms_per_infer=1000.0 * (c1 - c0) / (n1 - n0) if n1 > n0 else None,
                             loadavg=os.getloadavg()[0], foreign_cpu=foreign, waited_s=waited,
                             attempts=attempt + 1)
                    rows.append(r)
                    with open(raw_path, "a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(f"r{rnd} {name:22s} c{conc:<3d} {r['throughput']} infer/s  "
                          f"{r['cpu_ms_per_infer'] and round(r['cpu_ms_per_infer'], 4)} cpu-ms/inf  "
                          f"srv {100 * r['server_cpu_s'] / r['wall_s']:.0f}% pa {100 * r['pa_cpu_s'] / r['wall_s']:.0f}% "
                          f"foreign {100 * foreign:.0f}%",
                          flush=True)
            finally:
                client.close()
                stop(p)
    # summary over everything in OUT/raw.jsonl (all runs that appended there)
    rows = [json.loads(line) for line in open(raw_path)]
    allnames = list(dict.fromkeys([n for n in STACKS if any(r["stack"] == n for r in rows)]))
    summarize(rows, allnames, concs, os.path.join(a.out, "summary.md"))


def summarize(rows, names, concs, path):
    hdr = "| stack | " + " | ".join(f"c={c} infer/s" for c in concs) + " | " + \
          " | ".join(f"c={c} CPU ms/inf" for c in concs) + " | " + \
          " | ".join(f"c={c} server CPU %" for c in concs) + " | foreign CPU % | rounds |"
    lines = [hdr, "|" + "---|" * (3 + 3 * len(concs))]
    for n in names:
        tp, cpu, pct = [], [], []
        rounds = set()
        for c in concs:
            rs = [r for r in rows if r["stack"] == n and r["conc"] == c and r["throughput"]]
            rounds.update(r["round"] for r in rs)
            tp.append(f"{statistics.median([r['throughput'] for r in rs]):.0f}" if rs else "-")
            cs = [r["cpu_ms_per_infer"] for r in rs if r["cpu_ms_per_infer"]]
            cpu.append(f"{statistics.median(cs):.3f}" if cs else "-")
            ps = [100 * r["server_cpu_s"] / r["wall_s"] for r in rs]
            pct.append(f"{statistics.median(ps):.0f}" if ps else "-")
        fs = [100 * r.get("foreign_cpu", 0) for r in rows if r["stack"] == n]
        lines.append(f"| {n} | " + " | ".join(tp) + " | " + " | ".join(cpu) + " | " +
                     " | ".join(pct) + f" | {statistics.median(fs):.0f} | {len(rounds)} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
