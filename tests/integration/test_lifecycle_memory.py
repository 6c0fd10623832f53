"""Unload frees a model's memory: server RSS over repeated load/infer/unload cycles of the example classifier.

15 cycles by default (a leaked session would add tens of MiB per cycle); set MODELPORT_RSS_CYCLES=100
for the full measurement, printed with -s. Skipped when examples/model_repository/mobilenet_v2 has
not been built (python examples/build_models.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = ROOT / "examples" / "model_repository" / "mobilenet_v2"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.skipif(not (CLASSIFIER / "1" / "model.onnx").exists(), reason="example classifier not built")
def test_load_unload_cycles_do_not_leak(tmp_path: Path) -> None:
    cycles = int(os.environ.get("MODELPORT_RSS_CYCLES", "15"))
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(CLASSIFIER, repo / "mobilenet_v2")
    with running_server(repo, tmp_path / "memory.log", ["--model-control-mode=explicit"]) as server:
        client = httpclient.InferenceServerClient(server.url)
        try:
            image = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
            image.set_data_from_numpy(np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))
            baseline = rss_mib(server.pid)
            after: list[float] = []
            loaded: list[float] = []
            started = time.monotonic()
            for _ in range(cycles):
                client.load_model("mobilenet_v2")
                client.infer("mobilenet_v2", [image])
                loaded.append(rss_mib(server.pid))
                client.unload_model("mobilenet_v2")
                after.append(rss_mib(server.pid))
            print(
                f"\nRSS over {cycles} load/infer/unload cycles: before any load {baseline:.1f} MiB, "
                f"after cycle 1 {after[0]:.1f} MiB, after cycle {cycles} {after[-1]:.1f} MiB, "
                f"floor of the last 5 {min(after[-5:]):.1f} MiB, peak loaded {max(loaded):.1f} MiB "
                f"({time.monotonic() - started:.1f}s)"
            )
        finally:
            client.close()
    assert min(after[-5:]) - after[0] < 60.0, after
