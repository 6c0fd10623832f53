"""`--model-memory-accounting=process` through a real server: the memory budget bounds the server's
resident memory (read from /proc/<pid>/statm by the test) rather than the models' folder sizes,
driven by tritonclient over a repository of models whose weights dominate the process's noise."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from support.models import finish, write_model
from support.on_demand import folder_size, scrape
from support.server import HOST, ServerProcess, free_port, running_server

STATM = Path("/proc/self/statm")
pytestmark = pytest.mark.skipif(not STATM.exists(), reason="process accounting reads /proc/<pid>/statm")

ROWS, COLUMNS = 1024, 2048  # an 8 MiB float32 weight per model
MODELS = 8
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def big_name(index: int) -> str:
    return f"big_{index}"


def write_big_model(repo: Path, index: int, seed: int) -> Path:
    """<repo>/big_<index>: OUTPUT0 = INPUT0 @ W + index, W random (it neither compresses nor is shared)."""
    weight = np.random.default_rng(seed).standard_normal((ROWS, COLUMNS), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["INPUT0", "W"], ["product"]),
         helper.make_node("Add", ["product", "B"], ["OUTPUT0"])],
        big_name(index),
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", ROWS])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", COLUMNS])],
        initializer=[numpy_helper.from_array(weight, "W"),
                     numpy_helper.from_array(np.array(index, dtype=np.float32), "B")],
    )  # fmt: skip
    config = (
        f'name: "{big_name(index)}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {ROWS} ] }} ]\n'
        f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {COLUMNS} ] }} ]\n'
        "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
    )
    return write_model(repo, big_name(index), finish(graph), config)


def rss(pid: int) -> int:
    """The resident memory of process `pid` in bytes."""
    fields = Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()
    return int(fields[1]) * PAGE


@contextmanager
def process_accounting_server(
    repo: Path, log: Path, budget: int, accounting: str = "process"
) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    args = ["--model-control-mode=explicit", "--load-on-demand=true", f"--model-memory-budget={budget}",
            f"--model-memory-accounting={accounting}", "--allow-metrics=true", f"--metrics-port={port}",
            f"--metrics-address={HOST}"]  # fmt: skip
    with running_server(repo, log, args) as server:
        yield server, f"http://{HOST}:{port}/metrics"


def infer_big(client: httpclient.InferenceServerClient, index: int, rows: int = 1) -> None:
    tensor = httpclient.InferInput("INPUT0", [rows, ROWS], "FP32")
    tensor.set_data_from_numpy(np.zeros((rows, ROWS), dtype=np.float32))
    result = client.infer(big_name(index), [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((rows, COLUMNS), float(index)))


class RssSampler:
    """Samples a process's resident memory every few milliseconds on a thread."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.samples: list[int] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._done.is_set():
            self.samples.append(rss(self._pid))
            time.sleep(0.005)


def test_process_accounting_bounds_the_servers_resident_memory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(MODELS):
        write_big_model(repo, index, seed=index)
    size = folder_size(repo / big_name(0))
    # Measured: ONNX Runtime holds about twice the file per model once loaded, up to 3.5 times right
    # after a load (until the heap is trimmed), plus about 23 MiB of start-up at its first load:
    # fourteen folders hold four or five of the eight models, never all of them.
    budget = 14 * size
    rng = random.Random(5)
    plan = [rng.randrange(MODELS) for _ in range(120)]
    with process_accounting_server(repo, tmp_path / "server.log", budget) as (server, metrics):
        baseline = rss(server.pid)  # before the first load
        with RssSampler(server.pid) as sampler:

            def client_run(part: list[int]) -> None:
                with httpclient.InferenceServerClient(server.url, network_timeout=30) as client:
                    for index in part:
                        infer_big(client, index, rows=rng.randint(1, 8))

            with ThreadPoolExecutor(2) as pool:
                list(pool.map(client_run, [plan[0::2], plan[1::2]]))  # raises on any failed request
        figures = scrape(metrics)
    above = [sample - baseline for sample in sampler.samples]
    assert figures.factors is not None
    margin = int(size * figures.factors["onnxruntime"])  # one model as the server estimates it now
    print(f"\nfolder {size} B, budget {budget} B; RSS above the baseline at most {max(above)} B "
          f"({max(above) / budget:.2f} of the budget) over {len(above)} samples; "
          f"loads {sum(figures.loads.values()):.0f}, evictions {sum(figures.evictions.values()):.0f}; "
          f"factor {figures.factors}, margin {margin} B; server baseline {figures.baseline:.0f} B, "
          f"test baseline {baseline} B")  # fmt: skip
    assert len(above) >= 20
    assert 1 < figures.factors["onnxruntime"] < 8
    assert max(above) <= budget + margin
    assert sum(figures.evictions.values()) > 0
    assert sum(figures.resident.values()) > 0, "modelport_model_resident_bytes: the models' estimates"
    assert figures.baseline > 0, "modelport_process_memory_baseline_bytes"


def test_a_model_that_cannot_fit_the_process_budget_answers_503(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(2):
        write_big_model(repo, index, seed=index)
    size = folder_size(repo / big_name(0))
    budget = 2 * size  # the first model loads (nothing learned yet); its RSS teaches that two do not fit
    with (
        process_accounting_server(repo, tmp_path / "server.log", budget) as (server, metrics),
        httpclient.InferenceServerClient(server.url, network_timeout=30) as client,
    ):
        infer_big(client, 0)
        with pytest.raises(InferenceServerException) as too_big:
            infer_big(client, 1)
        assert too_big.value.status() == "503"
        flags = "(--model-memory-budget, --model-memory-accounting=process)"
        assert f"memory budget of {budget} bytes {flags}" in too_big.value.message()
        assert scrape(metrics).evictions == {big_name(0): 1}, "the idle model was unloaded first"


def test_files_accounting_stays_the_default(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(3):
        write_big_model(repo, index, seed=index)
    size = folder_size(repo / big_name(0))
    with (
        process_accounting_server(repo, tmp_path / "log", 2 * size, accounting="files") as (server, metrics),
        httpclient.InferenceServerClient(server.url, network_timeout=30) as client,
    ):
        baseline = rss(server.pid)
        for index in range(3):
            infer_big(client, index)
        above = rss(server.pid) - baseline
        figures = scrape(metrics)
    print(f"\nfiles accounting, budget {2 * size} B: RSS above the baseline {above} B, two models resident")
    assert figures.resident == {big_name(i): size for i in (1, 2)}, "two folders fit, whatever the RSS"
    assert figures.baseline == 0, "no baseline gauge without process accounting"
