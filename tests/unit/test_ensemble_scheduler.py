"""Ensembles through InferenceServer with an in-memory backend: DAG order, parallel branches,
batching inside, step errors, dependency loading and load-time validation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from modelport.backends.base import ExecuteResult, Execution, InstancePlacement
from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.config.spec import ModelSpec
from modelport.core.server import InferenceServer
from modelport.errors import ErrorCode, InternalError, ModelportError
from modelport.tensor.records import InferInput, InferRequest, RequestedOutput

pytestmark = pytest.mark.timeout(60)


class OpInstance:
    """Every output = the sum of the inputs + `add`; sleeps `sleep` s; fails when an input holds `fail_on`."""

    def __init__(self, name: str, params: dict[str, float], backend: OpBackend) -> None:
        self.name = name
        self.add = params.get("add", 0.0)
        self.sleep = params.get("sleep", 0.0)
        self.fail_on = params.get("fail_on")
        self.backend = backend
        self.outputs: list[str] = []

    def execute(self, requests: Sequence[InferRequest]) -> Execution:
        called = time.perf_counter_ns()
        start = time.monotonic()
        if self.backend.gate is not None and self.name in self.backend.gated:
            self.backend.gate.wait(timeout=10)
        time.sleep(self.sleep)
        results: ExecuteResult = []
        for request in requests:
            total = sum(i.data.astype(np.float32) for i in request.inputs)
            if self.fail_on is not None and bool(np.any(total == self.fail_on)):
                results.append(InternalError(f"{self.name} refuses {self.fail_on}"))
                continue
            results.append({name: total + self.add for name in self.outputs})
        with self.backend.lock:
            self.backend.runs.append((self.name, start, time.monotonic(), [r.batch_size for r in requests]))
        return Execution.whole_call(results, called)

    def close(self) -> None:
        pass

    def abort(self) -> bool:
        return False


class OpBackend:
    name = "op"

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float, list[int]]] = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.gated: set[str] = set()

    def auto_complete(self, config: object, model_path: Path, settings: ServerSettings) -> None:
        return None

    def usable_gpus(self) -> int:
        return 0

    def create_instance(self, spec: ModelSpec, model_path: Path, placement: InstancePlacement) -> OpInstance:
        instance = OpInstance(spec.name, json.loads(model_path.read_text()), self)
        instance.outputs = [t.name for t in spec.outputs]
        return instance


def write_op(
    repo: Path,
    name: str,
    inputs: Sequence[str] = ("X",),
    outputs: Sequence[str] = ("Y",),
    extra: str = "",
    **params: float,
) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.op").write_text(json.dumps(params))
    ins = ", ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 1 ] }}' for n in inputs)
    outs = ", ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 1 ] }}' for n in outputs)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "op"\nmax_batch_size: 8\ninput [ {ins} ]\noutput [ {outs} ]\n'
        f"instance_group [ {{ count: 1 kind: KIND_CPU }} ]\n{extra}"
    )


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'{{ model_name: "{model}" model_version: -1 {ins} {outs} }}'


def write_ensemble(
    repo: Path,
    name: str,
    steps: Sequence[str],
    inputs: Sequence[str] = ("IN",),
    outputs: Sequence[str] = ("OUT",),
) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    ins = ", ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 1 ] }}' for n in inputs)
    outs = ", ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 1 ] }}' for n in outputs)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\ninput [ {ins} ]\noutput [ {outs} ]\n'
        f"ensemble_scheduling {{ step [ {', '.join(steps)} ] }}\n"
    )


def make_server(repo: Path, mode: str = "none", **kwargs: object) -> tuple[InferenceServer, OpBackend]:
    backend = OpBackend()
    registry = BackendRegistry()
    registry.register(backend)
    settings = ServerSettings(model_repositories=(repo,), model_control_mode=mode, **kwargs)  # type: ignore[arg-type]
    return InferenceServer(settings, registry, drain_timeout_s=5.0), backend


def ensemble_request(
    name: str, value: float, rows: int = 1, outputs: Sequence[str] = (), **inputs: float
) -> InferRequest:
    values = {"IN": value, **inputs}
    return InferRequest(
        model_name=name,
        inputs=[
            InferInput(key, "FP32", (rows, 1), np.full((rows, 1), v, dtype=np.float32))
            for key, v in values.items()
        ],
        outputs=[RequestedOutput(o) for o in outputs],
    )


def states(server: InferenceServer) -> dict[str, tuple[str, str]]:
    return {e.name: (e.state.value if e.state else "", e.reason) for e in server.repository_index()}


def out(response: object, name: str = "OUT") -> float:
    found = {o.name: o for o in response.outputs}  # type: ignore[attr-defined]
    return float(found[name].data.reshape(-1)[0])


async def test_a_chain_runs_its_steps_in_order(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_op(tmp_path, "plus10", add=10)
    write_ensemble(
        tmp_path,
        "chain",
        [step("plus1", {"X": "IN"}, {"Y": "mid"}), step("plus10", {"X": "mid"}, {"Y": "OUT"})],
    )
    server, backend = make_server(tmp_path)
    await server.start()
    try:
        assert states(server)["chain"] == ("READY", "")
        response = await server.infer(ensemble_request("chain", 5.0, rows=2))
        assert response.model_name == "chain" and response.outputs[0].shape == (2, 1)
        assert out(response) == 16.0
        assert [run[0] for run in backend.runs] == ["plus1", "plus10"]
        ensemble = server.model_statistics("chain")["model_stats"][0]
        assert ensemble["inference_count"] == 2 and ensemble["execution_count"] == 1
        assert ensemble["inference_stats"]["success"]["count"] == 1
        composing = server.model_statistics("plus10")["model_stats"][0]
        assert composing["inference_stats"]["success"]["count"] == 1
        assert server.model_metadata("chain")["platform"] == "ensemble"
        assert server.model_config_json("chain")["ensemble_scheduling"]["step"][1]["model_name"] == "plus10"
    finally:
        await server.stop()


async def test_parallel_branches_run_concurrently(tmp_path: Path) -> None:
    write_op(tmp_path, "left", sleep=0.3, add=1)
    write_op(tmp_path, "right", sleep=0.3, add=2)
    write_op(tmp_path, "join", inputs=("A", "B"))
    write_ensemble(
        tmp_path,
        "diamond",
        [
            step("left", {"X": "IN"}, {"Y": "l"}),
            step("right", {"X": "IN"}, {"Y": "r"}),
            step("join", {"A": "l", "B": "r"}, {"Y": "OUT"}),
        ],
    )
    server, backend = make_server(tmp_path)
    await server.start()
    try:
        started = time.monotonic()
        response = await server.infer(ensemble_request("diamond", 1.0))
        elapsed = time.monotonic() - started
        assert out(response) == (1 + 1) + (1 + 2)
        runs = {name: (start, end) for name, start, end, _ in backend.runs}
        # Both branches were running at the same moment, and the join came after both.
        assert max(runs["left"][0], runs["right"][0]) < min(runs["left"][1], runs["right"][1])
        assert runs["join"][0] >= max(runs["left"][1], runs["right"][1])
        assert elapsed < 0.55, f"branches ran one after the other ({elapsed:.2f}s for two 0.3s steps)"
    finally:
        await server.stop()


async def test_steps_are_dynamically_batched_across_ensemble_requests(tmp_path: Path) -> None:
    write_op(tmp_path, "first", add=1)
    write_op(tmp_path, "batched", add=1, extra="dynamic_batching { max_queue_delay_microseconds: 100000 }")
    write_ensemble(
        tmp_path,
        "pipe",
        [step("first", {"X": "IN"}, {"Y": "mid"}), step("batched", {"X": "mid"}, {"Y": "OUT"})],
    )
    server, backend = make_server(tmp_path)
    await server.start()
    try:
        backend.gate, backend.gated = threading.Event(), {"batched"}
        tasks = [asyncio.create_task(server.infer(ensemble_request("pipe", float(i)))) for i in range(6)]
        await asyncio.sleep(0.3)  # the first `batched` execution waits on the gate; the rest queue up
        backend.gate.set()
        responses = await asyncio.gather(*tasks)
        assert sorted(out(r) for r in responses) == [i + 2.0 for i in range(6)]
        sizes = [sum(batch) for name, _, _, batch in backend.runs if name == "batched"]
        assert max(sizes) > 1, sizes
        stats = server.model_statistics("batched")["model_stats"][0]
        assert any(b["batch_size"] > 1 for b in stats["batch_stats"])
        assert stats["inference_count"] == 6 and stats["execution_count"] < 6
        assert server.model_statistics("pipe")["model_stats"][0]["inference_count"] == 6
    finally:
        await server.stop()


async def test_a_failing_step_is_named_in_the_error(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_op(tmp_path, "picky", fail_on=4)
    write_ensemble(
        tmp_path,
        "chain",
        [step("plus1", {"X": "IN"}, {"Y": "mid"}), step("picky", {"X": "mid"}, {"Y": "OUT"})],
    )
    server, _ = make_server(tmp_path)
    await server.start()
    try:
        with pytest.raises(ModelportError) as info:
            await server.infer(ensemble_request("chain", 3.0))
        assert info.value.code is ErrorCode.INTERNAL
        assert info.value.message == "in ensemble 'chain', step 1 (model 'picky'): picky refuses 4"
        stats = server.model_statistics("chain")["model_stats"][0]["inference_stats"]
        assert stats["fail"]["count"] == 1 and stats["success"]["count"] == 0
        assert out(await server.infer(ensemble_request("chain", 1.0))) == 2.0  # still serving
    finally:
        await server.stop()


async def test_a_failing_branch_fails_the_request_before_the_join_runs(tmp_path: Path) -> None:
    write_op(tmp_path, "slow", sleep=0.2)
    write_op(tmp_path, "bad", fail_on=1)
    write_op(tmp_path, "join", inputs=("A", "B"))
    write_ensemble(
        tmp_path,
        "fork",
        [
            step("slow", {"X": "IN"}, {"Y": "s"}),
            step("bad", {"X": "IN"}, {"Y": "b"}),
            step("join", {"A": "s", "B": "b"}, {"Y": "OUT"}),
        ],
    )
    server, backend = make_server(tmp_path)
    await server.start()
    try:
        with pytest.raises(ModelportError, match=r"step 1 \(model 'bad'\): bad refuses 1"):
            await server.infer(ensemble_request("fork", 1.0))
        assert "join" not in [run[0] for run in backend.runs]
    finally:
        await server.stop()


async def test_a_subset_of_outputs_runs_only_the_steps_it_needs(tmp_path: Path) -> None:
    write_op(tmp_path, "a", add=1)
    write_op(tmp_path, "b", add=2)
    write_ensemble(
        tmp_path,
        "two",
        [step("a", {"X": "IN"}, {"Y": "OUT_A"}), step("b", {"X": "IN"}, {"Y": "OUT_B"})],
        outputs=("OUT_A", "OUT_B"),
    )
    server, backend = make_server(tmp_path)
    await server.start()
    try:
        response = await server.infer(ensemble_request("two", 1.0, outputs=["OUT_B"]))
        assert [o.name for o in response.outputs] == ["OUT_B"] and out(response, "OUT_B") == 3.0
        assert [run[0] for run in backend.runs] == ["b"]
    finally:
        await server.stop()


async def test_invalid_ensembles_are_unavailable_with_the_reason_and_others_serve(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_ensemble(tmp_path, "unknown_model", [step("nosuch", {"X": "IN"}, {"Y": "OUT"})])
    write_ensemble(tmp_path, "bad_map", [step("plus1", {"NOPE": "IN"}, {"Y": "OUT"})])
    write_ensemble(tmp_path, "dangling", [step("plus1", {"X": "ghost"}, {"Y": "OUT"})], inputs=("IN",))
    write_ensemble(tmp_path, "loop1", [step("loop2", {"X": "IN"}, {"Y": "OUT"})])
    write_ensemble(tmp_path, "loop2", [step("loop1", {"X": "IN"}, {"Y": "OUT"})])
    write_ensemble(tmp_path, "good", [step("plus1", {"X": "IN"}, {"Y": "OUT"})])
    server, _ = make_server(tmp_path)
    await asyncio.wait_for(server.start(), timeout=20)
    try:
        index = states(server)
        assert index["good"] == ("READY", "") and index["plus1"] == ("READY", "")
        assert index["unknown_model"][0] == "UNAVAILABLE"
        assert (
            "ensemble 'unknown_model' contains models that are not available: nosuch"
            in index["unknown_model"][1]
        )
        assert index["bad_map"][0] == "UNAVAILABLE"
        assert "step 0 (model 'plus1'): ensemble tensor 'IN' is mapped to input 'NOPE'" in index["bad_map"][1]
        assert "step 0 (model 'plus1'): input 'X' is not mapped to any ensemble tensor" in index["bad_map"][1]
        assert index["dangling"][0] == "UNAVAILABLE"
        assert "ensemble tensor 'ghost', which is neither an ensemble input" in index["dangling"][1]
        for name in ("loop1", "loop2"):
            assert index[name][0] == "UNAVAILABLE"
            assert "circular dependency between ensembles" in index[name][1], index[name]
        assert out(await server.infer(ensemble_request("good", 1.0))) == 2.0
        assert not server.is_ready()  # strict readiness: some models failed
    finally:
        await server.stop()


async def test_loading_an_ensemble_loads_its_models_first(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_op(tmp_path, "plus2", add=2)
    write_ensemble(tmp_path, "inner", [step("plus1", {"X": "IN"}, {"Y": "OUT"})])
    write_ensemble(
        tmp_path,
        "outer",
        [step("inner", {"IN": "IN"}, {"OUT": "mid"}), step("plus2", {"X": "mid"}, {"Y": "OUT"})],
    )
    server, _ = make_server(tmp_path, "explicit", load_models=("outer",))
    await server.start()
    try:
        index = states(server)
        assert {name: index[name][0] for name in ("outer", "inner", "plus1", "plus2")} == dict.fromkeys(
            ("outer", "inner", "plus1", "plus2"), "READY"
        )
        assert out(await server.infer(ensemble_request("outer", 1.0))) == 4.0
        await server.unload_model("plus1", unload_dependents=True)
        index = states(server)
        assert index["inner"] == ("UNAVAILABLE", "unloaded") and index["outer"] == ("UNAVAILABLE", "unloaded")
        await server.load_model("outer")  # loads plus1 and inner again
        assert out(await server.infer(ensemble_request("outer", 2.0))) == 5.0
    finally:
        await server.stop()


async def test_a_missing_step_model_version_is_reported(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_ensemble(tmp_path, "pinned", [step("plus1", {"X": "IN"}, {"Y": "OUT"}).replace("-1", "7")])
    server, _ = make_server(tmp_path)
    await server.start()
    try:
        reason = states(server)["pinned"][1]
        assert (
            "ensemble 'pinned', step 0 (model 'plus1'): Request for unknown model: 'plus1' version 7"
            in reason
        )
    finally:
        await server.stop()


async def test_a_step_error_before_the_model_runs_names_the_step(tmp_path: Path) -> None:
    write_op(tmp_path, "plus1", add=1)
    write_ensemble(tmp_path, "chain", [step("plus1", {"X": "IN"}, {"Y": "OUT"})])
    server, _ = make_server(tmp_path, "explicit", load_models=("chain",))
    await server.start()
    try:
        await server.unload_model("plus1")  # the ensemble stays, its step model is gone
        with pytest.raises(ModelportError) as info:
            await server.infer(ensemble_request("chain", 1.0))
        assert info.value.code is ErrorCode.NOT_FOUND
        assert info.value.message.startswith(
            "in ensemble 'chain', step 0 (model 'plus1'): Request for unknown model"
        )
    finally:
        await server.stop()


async def test_an_ensemble_in_flight_finishes_while_the_server_drains(tmp_path: Path) -> None:
    write_op(tmp_path, "slow", sleep=0.3, add=1)
    write_op(tmp_path, "plus1", add=1)
    write_ensemble(
        tmp_path,
        "chain",
        [step("slow", {"X": "IN"}, {"Y": "mid"}), step("plus1", {"X": "mid"}, {"Y": "OUT"})],
    )
    server, _ = make_server(tmp_path)
    await server.start()
    try:
        task = asyncio.create_task(server.infer(ensemble_request("chain", 1.0)))
        await asyncio.sleep(0.1)
        server.begin_shutdown()  # new requests are refused; the second step of this one still runs
        assert out(await task) == 3.0
        with pytest.raises(ModelportError, match="Server exiting"):
            await server.infer(ensemble_request("chain", 1.0))
    finally:
        await server.stop()
