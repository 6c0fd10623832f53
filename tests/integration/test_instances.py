"""instance_group count N runs N executions at once; count 1 runs them one after the other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http.aio as aiohttpclient

from support.server import ServerProcess, running_server

# Each execution sleeps, and reports when it started and ended (wall clock, seconds).
MODEL_PY = '''
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            start = time.time()
            time.sleep(0.3)
            span = np.array([[start, time.time()]], dtype=np.float64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SPAN", span)]))
        return responses
'''

CONFIG = """
backend: "python"
max_batch_size: 8
input [{{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "SPAN" data_type: TYPE_FP64 dims: [ 2 ] }}]
instance_group [{{ count: {count} kind: KIND_CPU }}]
"""


@pytest.fixture(scope="module")
def sleepers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("instances_repo")
    for name, count in (("sleep_two", 2), ("sleep_one", 1)):
        version = Path(repo, name, "1")
        version.mkdir(parents=True)
        (version / "model.py").write_text(MODEL_PY)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n' + CONFIG.format(count=count))
    with running_server(repo, tmp_path_factory.mktemp("logs") / "instances.log") as proc:
        yield proc


async def _spans(server: ServerProcess, model: str, calls: int) -> list[tuple[float, float]]:
    client = aiohttpclient.InferenceServerClient(server.url)
    try:

        async def one() -> tuple[float, float]:
            tensor = aiohttpclient.InferInput("IN", [1, 1], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
            start, end = (await client.infer(model, [tensor])).as_numpy("SPAN")[0]
            return float(start), float(end)

        return list(await asyncio.gather(*(one() for _ in range(calls))))
    finally:
        await client.close()


def test_two_instances_execute_at_the_same_time(sleepers: ServerProcess) -> None:
    (a_start, a_end), (b_start, b_end) = asyncio.run(_spans(sleepers, "sleep_two", 2))
    assert max(a_start, b_start) < min(a_end, b_end), "the two executions did not overlap"


def test_one_instance_executes_one_batch_at_a_time(sleepers: ServerProcess) -> None:
    spans = sorted(asyncio.run(_spans(sleepers, "sleep_one", 2)))
    assert spans[0][1] <= spans[1][0], "a single instance ran two executions at once"
