"""A model that never returns cannot hold an unload past --exit-timeout-secs.

The stuck request is answered 503; a model process is killed; model code stuck on an instance
thread is abandoned with an error in the log naming the model; the other models keep serving.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_stuck_model
from support.server import running_server

EXIT_TIMEOUT_S = 2


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid`, read from /proc."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def stuck_input(value: float) -> httpclient.InferInput:
    tensor = httpclient.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.full(1, value, np.float32))
    return tensor


@pytest.mark.parametrize("isolated", [False, True], ids=["in-thread", "process"])
def test_unloading_a_hung_model_ends_within_the_exit_timeout(tmp_path: Path, isolated: bool) -> None:
    repo = tmp_path / "repo"
    write_stuck_model(repo, isolated=isolated)
    small_models.write_add_sub(repo)
    args = ("--model-control-mode=explicit", "--load-model=*", f"--exit-timeout-secs={EXIT_TIMEOUT_S}")
    with running_server(repo, tmp_path / "server.log", args) as server:
        before = children(server.pid)
        outcome: list[str] = []

        def stuck_call() -> None:
            with httpclient.InferenceServerClient(server.url, network_timeout=30) as client:
                try:
                    client.infer("stuck", [stuck_input(1.0)])
                    outcome.append("answered")
                except InferenceServerException as exc:
                    outcome.append(str(exc))

        caller = threading.Thread(target=stuck_call)
        caller.start()
        time.sleep(0.5)  # the request is inside the model now
        with httpclient.InferenceServerClient(server.url, network_timeout=30) as client:
            start = time.monotonic()
            client.unload_model("stuck")
            took = time.monotonic() - start
            caller.join(10)
            assert not client.is_model_ready("stuck")
            data = np.ones((1, 16), np.float32)
            inputs = [httpclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(data)
            assert client.infer("add_sub", inputs).as_numpy("OUTPUT0").tolist() == [[2.0] * 16]
        print(f"\nunload of a hung model ({'process' if isolated else 'in-thread'}): {took:.2f}s; {outcome}")
        assert EXIT_TIMEOUT_S - 0.2 < took < EXIT_TIMEOUT_S + 1.5
        assert len(outcome) == 1 and "unloaded before the request finished" in outcome[0]
        if isolated:
            deadline = time.monotonic() + 5
            while children(server.pid) - before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert children(server.pid) - before == set()  # the model process is gone (killed)
        else:
            assert "model 'stuck': instance" in server.log() and "abandoned" in server.log()
