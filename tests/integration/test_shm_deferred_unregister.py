"""Unregistering system shared memory while a request uses it, driven by tritonclient.utils.shared_memory:
as in Triton, the request still reads its inputs from and writes its outputs to its regions, which stay
registered (listed, their names taken) until the request ends and then go without another unregister.

The model holds each request until the test lets it go (a file in the model folder), so the unregister
lands while the request is surely in flight.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from support.server import ServerProcess, running_server

GATE_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TritonPythonModel:
    def execute(self, requests):
        open(os.path.join(HERE, "started"), "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(HERE, "go")) and time.monotonic() < deadline:
            time.sleep(0.01)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data + 1)]))
        return responses
"""
GATE_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
BYTE_SIZE = 16
TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    repo = tmp_path_factory.mktemp("shm_gate_repo")
    (repo / "gate" / "1").mkdir(parents=True)
    (repo / "gate" / "1" / "model.py").write_text(textwrap.dedent(GATE_MODEL), encoding="utf-8")
    (repo / "gate" / "config.pbtxt").write_text(GATE_CONFIG, encoding="utf-8")
    log = tmp_path_factory.mktemp("logs") / "shm_gate_server.log"
    with running_server(repo, log, grpc=True) as proc:
        yield proc, repo / "gate"


@pytest.fixture
def regions() -> Iterator[dict[str, tuple[str, Any]]]:
    """An input and an output region (name -> (key, handle)), destroyed after the test."""
    token = uuid.uuid4().hex[:10]
    made = {f"{role}_{token}": (f"/mp_defer_{role}_{token}", None) for role in ("input", "output")}
    for name, (key, _) in list(made.items()):
        made[name] = (key, shm.create_shared_memory_region(name, key, BYTE_SIZE, create_only=True))
    yield made
    for _, handle in made.values():
        shm.destroy_shared_memory_region(handle)


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _status_names(client: Any, protocol: str) -> set[str]:
    if protocol == "http":
        return {r["name"] for r in client.get_system_shared_memory_status()}
    return set(client.get_system_shared_memory_status().regions)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unregister_during_inference_waits_for_the_request(
    gate: tuple[ServerProcess, Path], regions: dict[str, tuple[str, Any]], protocol: str
) -> None:
    server, model_dir = gate
    for marker in ("started", "go"):
        (model_dir / marker).unlink(missing_ok=True)
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    input_name, output_name = regions
    data = np.array([1, 2, 3, 4], np.int32)
    shm.set_shared_memory_region(regions[input_name][1], [data])

    def infer() -> Any:  # on its own thread, with its own client: the test goes on meanwhile
        with module.InferenceServerClient(url) as client:
            tensor = module.InferInput("INPUT0", [4], "INT32")
            tensor.set_shared_memory(input_name, BYTE_SIZE)
            output = module.InferRequestedOutput("OUTPUT0")
            output.set_shared_memory(output_name, BYTE_SIZE)
            return client.infer("gate", [tensor], outputs=[output])

    with module.InferenceServerClient(url) as other, ThreadPoolExecutor(1) as pool:
        for name, (key, _) in regions.items():
            other.register_system_shared_memory(name, key, BYTE_SIZE)
        pending = pool.submit(infer)
        _wait_for((model_dir / "started").exists, "the model to start")

        other.unregister_system_shared_memory()  # while the request runs
        assert _status_names(other, protocol) == {input_name, output_name}  # still in use: listed
        key, _ = regions[output_name]
        with pytest.raises(InferenceServerException) as raised:
            other.register_system_shared_memory(output_name, key, BYTE_SIZE)
        assert f"shared memory region '{output_name}' already in manager" in (raised.value.message() or "")

        (model_dir / "go").touch()
        result = pending.result(timeout=TIMEOUT_S)
        assert result.get_output("OUTPUT0") is not None
        answer = shm.get_contents_as_numpy(regions[output_name][1], np.int32, [4])
        np.testing.assert_array_equal(answer, data + 1)

        # gone once the request ended, without a second unregister
        _wait_for(lambda: not _status_names(other, protocol), "the regions to go")
        for name in regions:
            with pytest.raises(InferenceServerException) as raised:
                other.get_system_shared_memory_status(name)
            assert f"Unable to find system shared memory region: '{name}'" in (raised.value.message() or "")
        other.register_system_shared_memory(output_name, key, BYTE_SIZE)  # the name is free again
        other.unregister_system_shared_memory()
