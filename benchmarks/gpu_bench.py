#!/usr/bin/env python3
"""CPU against GPU, and batching against none, on one modelport server: the example classifier (ONNX,
MobileNetV2) and a ResNet-18-class TorchScript model, each served three ways side by side:

  <model>_cpu         KIND_CPU, dynamic batching (the CPU configuration)
  <model>_gpu_b1      KIND_GPU, no dynamic batching: every request runs alone on the GPU
  <model>_gpu_batch   KIND_GPU, dynamic batching up to 8 (ONNX) / 16 (TorchScript) after at most 2 ms

benchmarks/loadgen.py drives each at every --concurrency over gRPC (one image per request), in its own
process, and the table gives throughput, p50 and p99, and the GPU variants' ratio to the CPU one. Needs
torch (the TorchScript model and, when the example repository is not built, the ONNX export).

  python benchmarks/gpu_bench.py --concurrency 1,16 --seconds 5 --out benchmarks/results/gpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE_CLASSIFIER = HERE.parent / "examples" / "model_repository" / "mobilenet_v2" / "1" / "model.onnx"

_VARIANTS = {  # suffix -> (instance kind, dynamic batching block)
    "cpu": ("KIND_CPU", "dynamic_batching {{ }}"),
    "gpu_b1": ("KIND_GPU", ""),
    "gpu_batch": ("KIND_GPU", "dynamic_batching {{ max_queue_delay_microseconds: 2000 }}"),
}

_CONFIG = """name: "{name}"
platform: "{platform}"
max_batch_size: {batch}
input [ {{ name: "{input}" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }} ]
output [ {{ name: "{output}" data_type: TYPE_FP32 dims: [ 1000 ] }} ]
{batching}
instance_group [ {{ count: 1 kind: {kind} }} ]
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_variants(
    repo: Path, base: str, model_file: Path, platform: str, io: tuple[str, str], batch: int
) -> None:
    for suffix, (kind, batching) in _VARIANTS.items():
        name = f"{base}_{suffix}"
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(model_file, repo / name / "1" / model_file.name)
        config = _CONFIG.format(
            name=name, platform=platform, batch=batch, input=io[0], output=io[1], kind=kind,
            batching=batching.format(batch=batch),
        )  # fmt: skip
        (repo / name / "config.pbtxt").write_text(config)


def _resnet_torchscript(target: Path) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from build_resnet import resnet18

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(resnet18(), torch.zeros(1, 3, 224, 224)).save(str(target))


def _classifier_onnx(target: Path) -> None:
    if EXAMPLE_CLASSIFIER.exists():
        shutil.copy(EXAMPLE_CLASSIFIER, target)
        return
    _log("the example repository is not built (make models): using a ResNet-18-shaped ONNX model instead")
    build = [sys.executable, str(HERE / "build_resnet.py"), "--output", str(target.parent)]
    subprocess.run(build, check=True)
    shutil.move(target.parent / "resnet18" / "1" / "model.onnx", target)


def build_repository(repo: Path) -> list[str]:
    """The six models; returns their names in reporting order."""
    scratch = repo.parent / "sources"
    scratch.mkdir()
    onnx_file, torch_file = scratch / "model.onnx", scratch / "model.pt"
    _classifier_onnx(onnx_file)
    _resnet_torchscript(torch_file)
    _write_variants(repo, "classifier", onnx_file, "onnxruntime_onnx", ("input", "logits"), 8)
    _write_variants(repo, "resnet_ts", torch_file, "pytorch_libtorch", ("INPUT__0", "OUTPUT__0"), 16)
    return [f"{base}_{suffix}" for base in ("classifier", "resnet_ts") for suffix in _VARIANTS]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _settled(http_port: int, models: list[str], deadline_s: float) -> dict[str, str]:
    """Wait until every model is READY or failed; {model: "" when ready, else its state and reason}."""
    end = time.monotonic() + deadline_s
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/index", data=b"{}")
    found: dict[str, str] = {}
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                index = {entry["name"]: entry for entry in json.loads(reply.read())}
        except OSError:
            time.sleep(0.5)
            continue
        found = {}
        for model in models:
            entry = index.get(model, {})
            state = entry.get("state", "")
            found[model] = "" if state == "READY" else f"{state or 'not found'}: {entry.get('reason', '')}"
        if all(not text.startswith(("LOADING", "not found", ": ")) for text in found.values()):
            return found
        time.sleep(0.5)
    raise SystemExit(f"the models did not settle within {deadline_s:.0f} s: {found}")


def _loadgen(model: str, grpc_port: int, args: argparse.Namespace, out: Path) -> list[dict]:
    result = out / f"{model}.json"
    command = [
        sys.executable, str(HERE / "loadgen.py"), "--protocol", "grpc", "--url", f"127.0.0.1:{grpc_port}",
        "--model", model, "--concurrency", args.concurrency, "--seconds", str(args.seconds),
        "--warmup-seconds", str(args.warmup_seconds), "--json", str(result),
    ]  # fmt: skip
    subprocess.run(command, check=False, timeout=60 + 4 * (args.seconds + args.warmup_seconds) * 8)
    return json.loads(result.read_text())["levels"] if result.exists() else []


def _table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| model | concurrency | infer/s | p50 ms | p99 ms | x CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, levels in results.items():
        family = model.split("_gpu")[0].removesuffix("_cpu")
        cpu = {lv["concurrency"]: lv["throughput"] for lv in results.get(f"{family}_cpu", [])}
        for lv in levels:
            lat = lv["latency_ms"]
            base = cpu.get(lv["concurrency"])
            ratio = f"{lv['throughput'] / base:.2f}" if base else "-"
            row = [model, lv["concurrency"], f"{lv['throughput']:.1f}", f"{lat['p50']:.2f}"]
            row += [f"{lat['p99']:.2f}", ratio]
            lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        models = build_repository(repo)
        http_port, grpc_port, metrics_port = _free_ports(3)
        server = subprocess.Popen(
            [sys.executable, "-m", "modelport", "serve", "--model-repository", str(repo),
             "--http-port", str(http_port), "--grpc-port", str(grpc_port),
             "--metrics-port", str(metrics_port), "--strict-readiness=false",
             "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1"],
            stdout=(args.out / "server.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            problems = _settled(http_port, models, 600)
            results = {}
            for model in models:
                if problems[model]:
                    _log(f"{model} is not served, skipped: {problems[model]}")
                    continue
                _log(f"loadgen: {model}")
                results[model] = _loadgen(model, grpc_port, args, args.out)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    table = _table(results)
    skipped = "".join(f"\n- {model} not served: {text}" for model, text in problems.items() if text)
    (args.out / "summary.md").write_text(table + "\n" + skipped + "\n")
    print(table + skipped)
    return 0 if results and all(results.values()) and not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
