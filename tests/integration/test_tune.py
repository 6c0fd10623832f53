"""`modelport tune` end to end: it searches add_sub (in-process, or measured over HTTP/gRPC) within its
time limit, writes configs/tuned.pbtxt (never config.pbtxt) and a plot, and a real server serves it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from modelport.config.model_config import parse_pbtxt
from support.models import small_models
from support.server import running_server

SHORT_TRIALS = ["--trial-seconds", "0.2", "--warmup-seconds", "0.05", "--concurrency", "1,4"]
ECHO_PY = """
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN")
                .as_numpy())]) for r in requests]
"""


def tune(repo: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "tune", model, "--model-repository", str(repo), *args],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def table_rows(stdout: str) -> list[str]:
    """The table's trial rows: `| 3* | i2 t1 b8 p8 d0 | ...`."""
    return [line for line in stdout.splitlines() if re.match(r"\| \d+\*? +\|", line)]


def test_tune_add_sub_writes_a_tuned_config_that_a_server_serves(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    folder = small_models.write_add_sub(repo)
    original = (folder / "config.pbtxt").read_bytes()
    began = time.monotonic()
    budget = ["--latency-budget-ms", "200"]
    done = tune(repo, "add_sub", "--max-minutes", "0.3", *budget, "--write", *SHORT_TRIALS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - began < 18 + 15  # the time limit, plus starting and stopping
    rows = table_rows(done.stdout)
    assert len(rows) >= 3, done.stdout
    assert sum("*" in row.split("|")[1] for row in rows) == 1  # exactly one chosen
    assert "c=1: infer/s p50/p99 ms" in done.stdout and "c=4: infer/s p50/p99 ms" in done.stdout
    assert re.search(r"best: i\d+ t\S+ b\d+ p\S+ d\d+  ->  \d+ infer/s at concurrency [14], ", done.stdout)
    assert "within the p99 budget of 200 ms" in done.stdout
    assert re.search(r"\[[#.]{20}\] \d+/\d+ trials", done.stderr)  # the progress line
    assert (folder / "config.pbtxt").read_bytes() == original

    tuned = parse_pbtxt((folder / "configs" / "tuned.pbtxt").read_text(), "tuned.pbtxt")
    chosen = re.search(r"best: i(\d+) t\S+ b(\d+)", done.stdout)
    assert chosen is not None
    assert (tuned.instance_group[0].count, tuned.max_batch_size) == (int(chosen[1]), int(chosen[2]))
    svg = (folder / "configs" / "tuned.svg").read_text()
    measured = [row for row in rows if "failed:" not in row]
    assert len(re.findall(r'<circle class="trial', svg)) == len(measured)
    assert svg.count('class="trial chosen"') == 1

    log = tmp_path / "server.log"
    with (
        running_server(repo, log, ["--model-config-name", "tuned"]) as server,
        httpclient.InferenceServerClient(server.url) as client,
    ):
        config = client.get_model_config("add_sub")
        assert config["max_batch_size"] == tuned.max_batch_size
        assert config["instance_group"][0]["count"] == tuned.instance_group[0].count
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = httpclient.InferInput(name, [1, 16], "FP32")
            tensor.set_data_from_numpy(np.full((1, 16), 3.0 if name == "INPUT0" else 1.0, np.float32))
            inputs.append(tensor)
        result = client.infer("add_sub", inputs)
        assert result.as_numpy("OUTPUT0").tolist() == [[4.0] * 16]
        assert result.as_numpy("OUTPUT1").tolist() == [[2.0] * 16]


def test_python_models_vary_only_their_instance_count(tmp_path: Path) -> None:
    folder = tmp_path / "repo" / "echo"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(ECHO_PY)
    (folder / "config.pbtxt").write_text(
    'name: "echo"\nbackend: "python"\nmax_batch_size: 4\ndynamic_batching { }\n'
    'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    )
    done = tune(tmp_path / "repo", "echo", "--max-minutes", "0.2", *SHORT_TRIALS)
    assert done.returncode == 0, done.stderr[-3000:]
    labels = [row.split("|")[2].strip() for row in table_rows(done.stdout)]
    assert labels and all(re.fullmatch(r"i\d+ t-( \(x\d\))?", label) for label in labels), labels
    assert not (folder / "configs").exists()  # nothing written without --write


def test_a_write_that_would_leave_the_model_folder_is_refused_before_tuning(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    folder = small_models.write_add_sub(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "configs").symlink_to(outside)
    done = tune(repo, "add_sub", "--write", *SHORT_TRIALS)
    assert done.returncode == 2 and "outside the model folder" in done.stderr
    assert list(outside.iterdir()) == []
    missing = tune(repo, "absent", *SHORT_TRIALS)
    assert missing.returncode == 2 and "model 'absent' has no folder" in missing.stderr


def test_models_that_answer_more_than_once_are_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "repo" / "stream"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(ECHO_PY)
    (folder / "config.pbtxt").write_text(
        'name: "stream"\nbackend: "python"\nmax_batch_size: 0\n'
        "model_transaction_policy { decoupled: true }\n"
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    )
    done = tune(tmp_path / "repo", "stream", *SHORT_TRIALS)
    assert done.returncode == 1
    assert "model 'stream' is decoupled: modelport tune measures stateless models only" in done.stderr


SAID = {"http": "over HTTP", "grpc": "over gRPC"}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tune_measured_over_the_network_writes_a_config_that_a_server_serves(
    tmp_path: Path, protocol: str
) -> None:
    repo = tmp_path / "repo"
    folder = small_models.write_add_sub(repo)
    began = time.monotonic()
    done = tune(repo, "add_sub", "--measure", protocol, "--max-minutes", "0.15", "--write", *SHORT_TRIALS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - began < 9 + 12  # the time limit, plus starting and stopping
    rows = table_rows(done.stdout)
    assert len(rows) >= 2, done.stdout
    # Every level of every trial went through the frontend: answers came back, none failed.
    cells = [cell.strip() for row in rows for cell in row.split("|")[3:5]]
    assert all(re.fullmatch(r"[1-9]\d*  \d+\.\d\d/\d+\.\d\d", cell) for cell in cells), done.stdout
    assert f"latencies measured {SAID[protocol]} on 127.0.0.1" in done.stdout
    assert re.search(rf"best: i\d+ .*; measured {SAID[protocol]}\)", done.stdout)
    tuned_text = (folder / "configs" / "tuned.pbtxt").read_text()
    assert f"measured {SAID[protocol]}" in tuned_text
    tuned = parse_pbtxt(tuned_text, "tuned.pbtxt")
    chosen = re.search(r"best: i(\d+) t\S+ b(\d+)", done.stdout)
    assert chosen is not None
    assert (tuned.instance_group[0].count, tuned.max_batch_size) == (int(chosen[1]), int(chosen[2]))

    grpc = protocol == "grpc"
    with running_server(repo, tmp_path / "server.log", ["--model-config-name", "tuned"], grpc=grpc) as server:
        client_module = grpcclient if grpc else httpclient
        client = client_module.InferenceServerClient(server.grpc_url if grpc else server.url)
        try:
            inputs = []
            for name, value in (("INPUT0", 3.0), ("INPUT1", 1.0)):
                tensor = client_module.InferInput(name, [1, 16], "FP32")
                tensor.set_data_from_numpy(np.full((1, 16), value, np.float32))
                inputs.append(tensor)
            result = client.infer("add_sub", inputs)
        finally:
            client.close()
        assert result.as_numpy("OUTPUT0").tolist() == [[4.0] * 16]
        assert result.as_numpy("OUTPUT1").tolist() == [[2.0] * 16]
