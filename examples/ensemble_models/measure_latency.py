"""Latency of the image_classifier ensemble next to preprocessing on the client + mobilenet_v2.

Needs the built example repository (`make models`). Builds a temporary repository with
mobilenet_v2 and the ensemble, starts `python -m modelport serve` on free 127.0.0.1 ports, and
classifies scikit-image's cat (a JPEG, ~35 KB) three ways, over HTTP and gRPC:

    ensemble        JPEG bytes -> image_classifier -> top-5 labels (all work in the server)
    client+model    decode + preprocess in the client (scripts/generate_input.py), FP32 [1,3,224,224]
                    (~600 KB) -> mobilenet_v2 with classification=5 (Triton's classification extension)
    model only      the same FP32 tensor prepared once -> mobilenet_v2 (the classifier's share)

Prints requests/s and p50/p90 latency per way, protocol and concurrency.

    python examples/ensemble_models/measure_latency.py [--requests 200] [--concurrency 1 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MOBILENET = ROOT / "examples" / "model_repository" / "mobilenet_v2"


def load_generate_input() -> Any:
    spec = importlib.util.spec_from_file_location("generate_input", ROOT / "scripts" / "generate_input.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_repository(root: Path) -> None:
    if not (MOBILENET / "1" / "model.onnx").is_file():
        raise SystemExit("examples/model_repository/mobilenet_v2 is missing: run `make models` first")
    shutil.copytree(MOBILENET, root / "mobilenet_v2")
    for name in ("preprocess", "postprocess", "image_classifier"):
        shutil.copytree(HERE / name, root / name)
        (root / name / "1").mkdir(exist_ok=True)
    shutil.copy(MOBILENET / "labels.txt", root / "postprocess" / "labels.txt")


def wait_ready(http_port: int, timeout_s: float = 120.0) -> None:
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


def ways(module: Any, jpeg: bytes, generate_input: Any) -> dict[str, Callable[[Any], str]]:
    """Each way: a function of a client that classifies the cat and returns the top label."""
    pixels = generate_input.preprocess(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))[None]

    def ensemble(client: Any) -> str:
        image = module.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[jpeg]], dtype=np.object_))
        result = client.infer("image_classifier", [image])
        return str(result.as_numpy("LABELS")[0][0].decode().split(":", 2)[2])

    def classify(client: Any, tensor: np.ndarray) -> str:
        inp = module.InferInput("input", list(tensor.shape), "FP32")
        inp.set_data_from_numpy(tensor)
        out = module.InferRequestedOutput("logits", class_count=5)
        result = client.infer("mobilenet_v2", [inp], outputs=[out])
        return str(result.as_numpy("logits")[0][0].decode().split(":", 2)[2])

    def client_side(client: Any) -> str:
        rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        return classify(client, generate_input.preprocess(rgb)[None])

    return {"ensemble": ensemble, "client+model": client_side, "model only": lambda c: classify(c, pixels)}


def run(
    url: str, module: Any, call: Callable[[Any], str], requests: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, requests // concurrency)
    labels: set[str] = set()

    def worker() -> None:
        client = module.InferenceServerClient(url)
        for _ in range(5):  # warm-up
            call(client)
        mine = []
        for _ in range(per_thread):
            start = time.perf_counter()
            labels.add(call(client))
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
    assert labels == {"Egyptian cat"}, labels
    return len(latencies) / elapsed, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    import skimage.data

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    generate_input = load_generate_input()
    root = Path(tempfile.mkdtemp(prefix="modelport-ensemble-latency-"))
    build_repository(root)
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "modelport", "serve", "--model-repository", str(root),
        "--http-address", "127.0.0.1", "--http-port", str(http_port),
        "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc_port), "--allow-metrics=false",
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        wait_ready(http_port)
        print(f"JPEG: {len(jpeg)} bytes; FP32 tensor: {3 * 224 * 224 * 4} bytes")
        row = "{:<14} {:<5} {:>4} {:>8} {:>8} {:>8}"
        print(row.format("way", "proto", "conc", "req/s", "p50 ms", "p90 ms"))
        for concurrency in args.concurrency:
            for protocol, module, url in (
                ("http", httpclient, f"127.0.0.1:{http_port}"),
                ("grpc", grpcclient, f"127.0.0.1:{grpc_port}"),
            ):
                for name, call in ways(module, jpeg, generate_input).items():
                    rate, latencies = run(url, module, call, args.requests, concurrency)
                    p50, p90 = np.percentile(latencies, [50, 90])
                    print(
                        row.format(name, protocol, concurrency, f"{rate:.1f}", f"{p50:.2f}", f"{p90:.2f}"),
                        flush=True,
                    )
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
