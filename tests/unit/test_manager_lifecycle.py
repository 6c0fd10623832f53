"""The model lifecycle through InferenceServer with an in-memory backend: states, swaps, drains, overrides."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.backends.base import Execution, InstancePlacement
from modelport.backends.registry import BackendRegistry
from modelport.clock import Deadline
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import InvalidInput, ModelNotFound, ModelportError, ModelUnavailable
from modelport.frontends.http.app import create_http_app
from modelport.repository.lifecycle import ModelState
from modelport.tensor.records import InferInput, InferRequest

CONFIG = """
name: "{name}"
backend: "adder"
max_batch_size: 8
{extra}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
"""


class AdderInstance:
    """OUTPUT0 = INPUT0 + the number written in the model file; waits on the backend's gate."""

    def __init__(self, value: float, backend: AdderBackend) -> None:
        self.value = value
        self.backend = backend

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        start = time.perf_counter_ns()
        self.backend.executions.append((self.value, [r.id for r in requests]))
        gate = self.backend.gate
        if gate is not None and not gate.wait(timeout=10):
            raise TimeoutError("gate never opened")
        return Execution.whole_call([{"OUTPUT0": r.inputs[0].data + self.value} for r in requests], start)

    def close(self) -> None:
        self.backend.closed.append(self.value)

    def abort(self) -> bool:
        return False


class AdderBackend:
    name = "adder"

    def __init__(self) -> None:
        self.gate: threading.Event | None = None
        self.executions: list[tuple[float, list[str]]] = []
        self.closed: list[float] = []
        self.created: list[float] = []

    def auto_complete(self, config: object, model_path: Path, settings: ServerSettings) -> None:
        return None

    def usable_gpus(self) -> int:
        return 0

    def create_instance(
        self, spec: ModelSpec, model_path: Path, placement: InstancePlacement
    ) -> AdderInstance:
        text = model_path.read_text().strip()
        if text == "broken":
            raise InvalidInput(f"'{model_path}' is not a model")
        self.created.append(float(text))
        return AdderInstance(float(text), self)


def write_model(repo: Path, name: str, versions: dict[int, str], extra: str = "", count: int = 1) -> Path:
    folder = repo / name
    for version, value in versions.items():
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        (folder / str(version) / "model.adder").write_text(value)
    (folder / "config.pbtxt").write_text(CONFIG.format(name=name, extra=extra, count=count))
    return folder


def request(name: str, value: float = 0.0, version: str = "", request_id: str = "") -> InferRequest:
    data = np.full((1, 1), value, dtype=np.float32)
    return InferRequest(
        model_name=name,
        model_version=version,
        id=request_id,
        inputs=[InferInput("INPUT0", "FP32", (1, 1), data)],
    )


async def infer_value(server: InferenceServer, name: str, version: str = "", request_id: str = "") -> float:
    response = await server.infer(request(name, 0.0, version, request_id))
    return float(response.outputs[0].data.reshape(-1)[0])


def make_server(repo: Path, mode: str = "none", **kwargs: object) -> tuple[InferenceServer, AdderBackend]:
    backend = AdderBackend()
    registry = BackendRegistry()
    registry.register(backend)
    settings = ServerSettings(model_repositories=(repo,), model_control_mode=mode, **kwargs)  # type: ignore[arg-type]
    return InferenceServer(settings, registry, drain_timeout_s=5.0), backend


def states(server: InferenceServer) -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (e.name, e.version): (e.state.value if e.state else "", e.reason) for e in server.repository_index()
    }


async def test_startup_loads_every_model_and_reports_states(tmp_path: Path) -> None:
    write_model(tmp_path, "good", {1: "1", 2: "2"}, extra="version_policy: { all: { } }")
    write_model(tmp_path, "bad", {1: "broken"})
    server, _ = make_server(tmp_path)
    assert server.is_live() and not server.is_ready()  # live before and while loading
    await server.start()
    index = states(server)
    assert index[("good", "1")] == ("READY", "")
    assert index[("good", "2")] == ("READY", "")
    assert index[("bad", "1")][0] == "UNAVAILABLE" and "not a model" in index[("bad", "1")][1]
    assert not server.is_ready()  # strict readiness: one model failed
    assert [e.name for e in server.repository_index(ready_only=True)] == ["good", "good"]
    assert await infer_value(server, "good") == 2.0
    assert await infer_value(server, "good", "1") == 1.0
    await server.stop()


async def test_load_and_unload_are_refused_unless_explicit(tmp_path: Path) -> None:
    write_model(tmp_path, "good", {1: "1"})
    for mode in ("none", "poll"):
        server, _ = make_server(tmp_path, mode)
        await server.start()
        for call in (server.load_model("good"), server.unload_model("good")):
            with pytest.raises(ModelUnavailable, match="explicit model load / unload is not allowed"):
                await call
        await server.stop()


async def test_explicit_mode_load_unload_and_readiness(tmp_path: Path) -> None:
    write_model(tmp_path, "a", {1: "1"})
    write_model(tmp_path, "b", {1: "10"})
    server, backend = make_server(tmp_path, "explicit", load_models=("a",))
    await server.start()
    assert states(server)[("b", "")] == ("", "")  # known, never loaded
    assert server.is_ready()
    await server.load_model("b")
    assert await infer_value(server, "b") == 10.0
    await server.load_model("b")  # unchanged: no-op
    assert backend.created.count(10.0) == 1
    await server.unload_model("b")
    assert states(server)[("b", "1")] == ("UNAVAILABLE", "unloaded")
    assert server.is_ready()
    with pytest.raises(ModelNotFound, match="has no available versions"):
        await infer_value(server, "b")
    with pytest.raises(ModelNotFound, match="version 1 is not found"):
        await infer_value(server, "b", "1")
    with pytest.raises(InvalidInput, match="failed to load 'nosuch', failed to poll from model repository"):
        await server.load_model("nosuch")
    assert "nosuch" not in {e.name for e in server.repository_index()}
    await server.unload_model("never-heard-of")  # unloading what is not loaded succeeds
    await server.stop()


async def test_failed_model_keeps_strict_readiness_false_after_unload(tmp_path: Path) -> None:
    write_model(tmp_path, "bad", {1: "broken"})
    server, _ = make_server(tmp_path, "explicit", load_models=("bad",))
    await server.start()
    assert not server.is_ready()
    await server.unload_model("bad")
    assert not server.is_ready()
    await server.stop()
    relaxed, _ = make_server(tmp_path, "explicit", load_models=("bad",), strict_readiness=False)
    await relaxed.start()
    assert relaxed.is_ready()
    await relaxed.stop()


async def test_reload_swaps_without_failing_inflight_requests(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "m", {1: "1"})
    server, backend = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    backend.gate = threading.Event()
    old_requests = [asyncio.create_task(infer_value(server, "m", request_id=f"old{i}")) for i in range(3)]
    await asyncio.sleep(0.05)  # one running on the old copy, two queued behind it
    (folder / "1" / "model.adder").write_text("100")
    reload = asyncio.create_task(server.load_model("m"))
    for _ in range(200):
        if 100.0 in backend.created:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert not reload.done()  # the old copy is draining
    assert states(server)[("m", "1")] == ("READY", "")
    new_request = asyncio.create_task(infer_value(server, "m", request_id="new"))
    backend.gate.set()
    assert await asyncio.gather(*old_requests) == [1.0, 1.0, 1.0]  # finished on the old copy
    assert await new_request == 100.0
    await reload
    assert backend.closed == [1.0]
    await server.stop()


async def test_failed_reload_keeps_the_old_version_serving(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "m", {1: "1"})
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    (folder / "1" / "model.adder").write_text("broken")
    with pytest.raises(InvalidInput, match="load failed for model 'm': version 1 is at UNAVAILABLE state"):
        await server.load_model("m")
    assert states(server)[("m", "1")] == ("READY", "")
    assert await infer_value(server, "m") == 1.0
    # A new version that fails to load: the old one keeps serving too.
    (folder / "1" / "model.adder").write_text("1")
    (folder / "2").mkdir()
    (folder / "2" / "model.adder").write_text("broken")
    with pytest.raises(InvalidInput, match="version 2 is at UNAVAILABLE state"):
        await server.load_model("m")
    assert await infer_value(server, "m") == 1.0
    assert states(server)[("m", "2")][0] == "UNAVAILABLE"
    await server.stop()


async def test_new_version_takes_over_and_the_old_one_is_retired(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "m", {1: "1"})
    server, backend = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    (folder / "2").mkdir()
    (folder / "2" / "model.adder").write_text("2")
    await server.load_model("m")
    assert await infer_value(server, "m") == 2.0
    assert states(server)[("m", "1")] == ("UNAVAILABLE", "unloaded")
    assert backend.closed == [1.0]
    assert [m.version for m in server.repository.models.served_versions("m")] == [2]
    await server.stop()


async def test_unload_waits_for_inflight_requests(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, backend = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    backend.gate = threading.Event()
    running = asyncio.create_task(infer_value(server, "m"))
    await asyncio.sleep(0.05)
    unload = asyncio.create_task(server.unload_model("m"))
    await asyncio.sleep(0.05)
    assert states(server)[("m", "1")] == ("UNLOADING", "")
    with pytest.raises(ModelUnavailable, match="is not at ready state"):
        await infer_value(server, "m", "1")
    backend.gate.set()
    assert await running == 1.0
    await unload
    assert states(server)[("m", "1")] == ("UNAVAILABLE", "unloaded")
    assert backend.closed == [1.0]
    await server.stop()


async def test_config_override_and_files_use_a_private_copy(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "m", {1: "1"})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    config = (
        '{"name": "m", "backend": "adder", "max_batch_size": 8, "version_policy": {"all": {}},'
        ' "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [1]}],'
        ' "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [1]}]}'
    )
    await server.load_model("m", config, {"file:1/model.adder": b"5", "file:3/model.adder": b"7"})
    assert await infer_value(server, "m", "1") == 5.0
    assert await infer_value(server, "m") == 7.0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (folder / "1" / "model.adder").read_text() == "1"
    # A plain load goes back to what is on disk.
    await server.load_model("m")
    assert await infer_value(server, "m") == 1.0
    assert states(server)[("m", "3")] == ("UNAVAILABLE", "unloaded")
    await server.stop()


@pytest.mark.parametrize(
    "key",
    [
        "file:../escape/model.adder",
        "file:/etc/passwd",
        "file:1/../../x",
        "file:1\\..\\x",
        "file:",
        "file:1/./",
    ],
)
async def test_file_override_paths_must_stay_inside_the_model(tmp_path: Path, key: str) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    config = '{"name": "m", "backend": "adder", "max_batch_size": 8}'
    with pytest.raises(InvalidInput, match="is refused"):
        await server.load_model("m", config, {key: b"9"})
    assert not (tmp_path / "escape").exists()
    assert await infer_value(server, "m") == 1.0
    await server.stop()


async def test_files_need_a_config_and_bad_json_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    with pytest.raises(InvalidInput, match="failed to poll from model repository"):
        await server.load_model("m", None, {"file:1/model.adder": b"9"})
    with pytest.raises(InvalidInput, match="failed to poll from model repository"):
        await server.load_model("m", "{not json")
    await server.stop()


async def test_traffic_split_and_pin(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1", 2: "2"}, extra="version_policy: { all: { } }")
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    assert server.model_traffic("m")["source"] == "default"
    server.set_model_traffic("m", {"weights": {"1": 90, "2": 10}})
    values = []
    for _ in range(100):
        values.append(await infer_value(server, "m"))
        server.model_metadata("m")  # looking at the model does not consume the split
        assert server.is_model_ready("m")
    assert values.count(1.0) == 90 and values.count(2.0) == 10
    assert await infer_value(server, "m", "2") == 2.0  # a versioned request is never rerouted
    server.set_model_traffic("m", {"pin": "2"})
    assert {await infer_value(server, "m") for _ in range(10)} == {2.0}
    doc = server.set_model_traffic("m", {"pin": None, "weights": None})
    assert doc["source"] == "default" and doc["pin"] is None
    assert await infer_value(server, "m") == 2.0
    with pytest.raises(InvalidInput, match="not READY"):
        server.set_model_traffic("m", {"pin": "5"})
    with pytest.raises(InvalidInput, match="not READY"):
        server.set_model_traffic("m", {"weights": {"1": 50, "9": 50}})
    with pytest.raises(InvalidInput):
        server.set_model_traffic("m", {"colour": "blue"})
    with pytest.raises(ModelNotFound):
        server.model_traffic("nosuch")
    await server.stop()


async def test_traffic_split_from_config_parameters(tmp_path: Path) -> None:
    extra = (
        "version_policy: { all: { } }\n"
        'parameters { key: "modelport.traffic.weights" value { string_value: "1:3,2:1" } }'
    )
    write_model(tmp_path, "m", {1: "1", 2: "2"}, extra=extra)
    server, _ = make_server(tmp_path)
    await server.start()
    assert server.model_traffic("m")["source"] == "config"
    values = [await infer_value(server, "m") for _ in range(40)]
    assert values.count(1.0) == 30 and values.count(2.0) == 10
    await server.stop()


async def test_warmup_runs_on_every_instance_before_ready(tmp_path: Path) -> None:
    (tmp_path / "m" / "warmup").mkdir(parents=True)
    (tmp_path / "m" / "warmup" / "in.bin").write_bytes(np.array([3.0, 4.0], dtype=np.float32).tobytes())
    warmup = """
model_warmup [
  { name: "zeros" batch_size: 2 count: 2
    inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } },
  { name: "file" batch_size: 2
    inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 1 ] input_data_file: "in.bin" } } }
]"""
    write_model(tmp_path, "m", {1: "1"}, extra=warmup, count=2)
    server, backend = make_server(tmp_path)
    await server.start()
    ids = [ids for _, ids in backend.executions]
    assert ids.count(["warmup:zeros"]) == 4  # count 2 on each of 2 instances
    assert ids.count(["warmup:file"]) == 2
    assert server.is_ready()
    await server.stop()


async def test_failing_warmup_fails_the_load(tmp_path: Path) -> None:
    warmup = """
model_warmup [ { name: "missing" batch_size: 1
  inputs { key: "INPUT0"
           value: { data_type: TYPE_FP32 dims: [ 1 ] input_data_file: "../../etc/passwd" } } } ]"""
    write_model(tmp_path, "m", {1: "1"}, extra=warmup)
    server, _ = make_server(tmp_path)
    await server.start()
    state, reason = states(server)[("m", "1")]
    assert state == "UNAVAILABLE" and "'..' is not allowed" in reason
    await server.stop()


async def test_shutdown_refuses_new_requests_and_drains(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, backend = make_server(tmp_path)
    await server.start()
    backend.gate = threading.Event()
    running = [asyncio.create_task(infer_value(server, "m")) for _ in range(3)]
    await asyncio.sleep(0.05)
    server.begin_shutdown()
    assert not server.is_ready() and server.is_live()
    with pytest.raises(ModelUnavailable, match="Server exiting"):
        await infer_value(server, "m")
    drained = asyncio.create_task(server.drain(Deadline(5.0)))
    await asyncio.sleep(0.05)
    assert not drained.done() and server.inflight == 3
    backend.gate.set()
    assert await drained == 0
    assert await asyncio.gather(*running) == [1.0, 1.0, 1.0]
    await server.stop()


async def test_http_requests_during_startup_wait_for_the_load(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, _ = make_server(tmp_path)
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}
    transport = httpx.ASGITransport(app=create_http_app(server))
    async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
        early = asyncio.create_task(client.post("/v2/models/m/infer", json=body))
        assert (await client.get("/v2/health/live")).status_code == 200  # health answers at once
        await asyncio.sleep(0.05)
        assert not early.done()
        await server.start()
        answer = await early
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1.0]
    await server.stop()


def test_errors_are_modelport_errors() -> None:
    assert issubclass(InvalidInput, ModelportError)
    assert ModelState.UNLOADING.value == "UNLOADING"


async def test_a_rollout_keeps_the_server_ready(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "m", {1: "1"})
    server, backend = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    assert server.is_ready()
    backend.gate = threading.Event()
    running = asyncio.create_task(infer_value(server, "m", "1"))
    await asyncio.sleep(0.05)
    (folder / "2").mkdir()
    (folder / "2" / "model.adder").write_text("2")
    rollout = asyncio.create_task(server.load_model("m"))
    for _ in range(200):
        if states(server).get(("m", "1"), ("",))[0] == "UNLOADING":
            break
        await asyncio.sleep(0.01)
    assert states(server)[("m", "1")] == ("UNLOADING", "")  # draining the running request
    assert states(server)[("m", "2")] == ("READY", "")
    assert server.is_ready()
    backend.gate.set()
    assert await running == 1.0
    await rollout
    assert server.is_ready()
    await server.stop()


async def test_override_copies_are_deleted_when_no_longer_used(tmp_path: Path) -> None:
    write_model(tmp_path, "m", {1: "1"})
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    config = '{"name": "m", "backend": "adder", "max_batch_size": 8, "version_policy": {"all": {}}}'
    manager = server.repository
    await server.load_model("m", config, {"file:1/model.adder": b"5", "file:3/model.adder": b"7"})
    (first,) = manager.models.get("m").workdirs
    assert first.is_dir()
    await server.load_model("m", config, {"file:1/model.adder": b"6"})  # replaces every version
    (second,) = manager.models.get("m").workdirs
    assert not first.exists() and second.is_dir()
    await server.load_model("m")  # back to the repository
    assert not second.exists() and not manager.models.get("m").workdirs
    await server.load_model("m", config, {"file:1/model.adder": b"5"})
    (third,) = manager.models.get("m").workdirs
    await server.unload_model("m")
    assert not third.exists()
    with pytest.raises(InvalidInput):
        await server.load_model("m", config, {"file:../x": b"5"})
    await server.stop()


async def test_a_raw_binary_request_is_decoded_against_the_version_that_runs_it(tmp_path: Path) -> None:
    """Unversioned traffic routed to version 1 while version 2 (the newest) has other input dims.

    Version 1's reload fails, so it keeps serving its old config (INPUT0 [1]) next to version 2's
    new one (INPUT0 [2]); a raw binary body of one FP32 fits only version 1, where traffic goes.
    """
    folder = write_model(tmp_path, "m", {1: "1", 2: "2"}, extra="version_policy: { all: { } }")
    server, _ = make_server(tmp_path, "explicit", load_models=("m",))
    await server.start()
    server.set_model_traffic("m", {"weights": {"1": 1}})
    (folder / "1" / "model.adder").write_text("broken")
    config = CONFIG.format(name="m", extra="version_policy: { all: { } }", count=1)
    (folder / "config.pbtxt").write_text(config.replace("dims: [ 1 ]", "dims: [ 2 ]"))
    with pytest.raises(InvalidInput, match="version 1"):
        await server.load_model("m")
    assert server.model_spec("m", "1").inputs[0].dims == (1,)
    assert server.model_spec("m", "2").inputs[0].dims == (2,)
    transport = httpx.ASGITransport(app=create_http_app(server))
    async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
        answer = await client.post(
            "/v2/models/m/infer",
            content=np.float32(0.5).tobytes(),
            headers={"Inference-Header-Content-Length": "0"},
        )
    assert answer.status_code == 200, answer.text
    header_length = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.content[:header_length])
    assert header["model_version"] == "1"
    assert np.frombuffer(answer.content[header_length:], dtype=np.float32).tolist() == [1.5]
    await server.stop()
