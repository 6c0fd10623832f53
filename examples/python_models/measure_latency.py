"""Latency of add_sub as a Python model (in-thread and process-isolated) next to the ONNX add_sub.

Builds a temporary repository with the three models, starts `python -m modelport serve` on free
127.0.0.1 ports, and sends batch-1 requests with tritonclient over HTTP and gRPC at concurrency 1
and 8. Prints requests/s and p50/p90/p99 latency per model, protocol and concurrency.

    python examples/python_models/measure_latency.py [--requests 2000] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import small_models  # noqa: E402  (examples/small_models.py)

MODELS = ("add_sub", "add_sub_python", "add_sub_python_process")
ISOLATION = 'parameters { key: "MODELPORT_ISOLATION" value { string_value: "process" } }\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_repository(root: Path) -> None:
    small_models.write_add_sub(root)
    shutil.copytree(HERE / "add_sub_python", root / "add_sub_python")
    target = root / "add_sub_python_process"
    shutil.copytree(HERE / "add_sub_python", target)
    config = (target / "config.pbtxt").read_text().replace('"add_sub_python"', '"add_sub_python_process"')
    (target / "config.pbtxt").write_text(config + ISOLATION)


def wait_ready(http_port: int, timeout_s: float = 60.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def make_inputs(module: Any) -> list[Any]:
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
        tensors.append(tensor)
    return tensors


def run(url: str, module: Any, model: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send `requests` in total from `concurrency` threads; return (requests/s, latencies in ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, requests // concurrency)

    def worker() -> None:
        client = module.InferenceServerClient(url)
        inputs = make_inputs(module)
        mine = []
        for _ in range(50):  # warm-up
            client.infer(model, inputs)
        for _ in range(per_thread):
            start = time.perf_counter()
            client.infer(model, inputs)
            mine.append((time.perf_counter() - start) * 1000)
        with lock:
            latencies.extend(mine)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelport-latency-"))
    build_repository(root)
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "modelport", "serve", "--model-repository", str(root),
        "--http-address", "127.0.0.1", "--http-port", str(http_port),
        "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc_port), "--allow-metrics=false",
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(http_port)
        row = "{:<24} {:<5} {:>4} {:>8} {:>8} {:>8} {:>8}"
        print(row.format("model", "proto", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms"))
        for concurrency in args.concurrency:
            for protocol, module, url in (
                ("http", httpclient, f"127.0.0.1:{http_port}"),
                ("grpc", grpcclient, f"127.0.0.1:{grpc_port}"),
            ):
                for model in MODELS:
                    rate, latencies = run(url, module, model, args.requests, concurrency)
                    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
                    numbers = (f"{rate:.0f}", f"{p50:.3f}", f"{p90:.3f}", f"{p99:.3f}")
                    print(row.format(model, protocol, concurrency, *numbers), flush=True)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
