"""Models on demand through a real server: `--load-on-demand` loads a model at its first inference
request (once, however many requests arrive together), and `--model-memory-budget` unloads the least
recently used idle models to make room (never a pinned or a busy one), driven by tritonclient."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.models import write_broken_onnx, write_sleepy_model
from support.on_demand import WIDTH, add_model_name, folder_size, scrape, write_add_model
from support.server import HOST, ServerProcess, free_port, running_server

EVICTED = "evicted (memory budget)"


@contextmanager
def on_demand_server(
    repo: Path, log: Path, budget: int | None = None, *, grpc: bool = False, on_demand: bool = True
) -> Iterator[tuple[ServerProcess, str]]:
    """An explicit-mode server with --load-on-demand (and a budget); yields it and its metrics URL."""
    port = free_port()
    args = ["--model-control-mode=explicit", f"--load-on-demand={str(on_demand).lower()}",
            "--allow-metrics=true", f"--metrics-port={port}", f"--metrics-address={HOST}"]  # fmt: skip
    if budget is not None:
        args.append(f"--model-memory-budget={budget}")
    with running_server(repo, log, args, grpc=grpc) as server:
        yield server, f"http://{HOST}:{port}/metrics"


def infer_add(client: httpclient.InferenceServerClient, index: int, rows: int = 1) -> None:
    """One request to add_<index>; checks the answer came from that model."""
    data = np.arange(rows * WIDTH, dtype=np.float32).reshape(rows, WIDTH)
    tensor = httpclient.InferInput("INPUT0", [rows, WIDTH], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(add_model_name(index), [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data + index)


def index_rows(client: httpclient.InferenceServerClient) -> dict[str, dict[str, str]]:
    """model -> its version-1 row of the repository index (state, reason)."""
    return {row["name"]: row for row in client.get_model_repository_index() if row.get("version") == "1"}


def http(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url, connection_timeout=30, network_timeout=30)


def test_first_request_loads_the_model_over_http_and_grpc(tmp_path: Path) -> None:
    for index in range(3):
        write_add_model(tmp_path / "repo", index)
    with on_demand_server(tmp_path / "repo", tmp_path / "server.log", grpc=True) as (server, metrics):
        with http(server) as client:
            assert client.get_model_repository_index() == [{"name": add_model_name(i)} for i in range(3)], (
                "nothing is loaded before a request"
            )
            assert not client.is_model_ready(add_model_name(1))
            infer_add(client, 1)
            assert index_rows(client)[add_model_name(1)]["state"] == "READY"
            assert client.is_server_ready(), "an on-demand load keeps the server ready"
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
            tensor = grpcclient.InferInput("INPUT0", [1, WIDTH], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, WIDTH), dtype=np.float32))
            result = grpc_client.infer(add_model_name(2), [tensor])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, WIDTH), 2.0))
        figures = scrape(metrics)
        assert figures.loads == {add_model_name(1): 1, add_model_name(2): 1}
        assert figures.resident == {
            add_model_name(i): folder_size(tmp_path / "repo" / add_model_name(i)) for i in (1, 2)
        }


def test_metadata_and_config_load_the_model_but_readiness_does_not(tmp_path: Path) -> None:
    for index in range(3):
        write_add_model(tmp_path / "repo", index)
    with on_demand_server(tmp_path / "repo", tmp_path / "server.log", grpc=True) as (server, metrics):
        with http(server) as client:
            assert not client.is_model_ready(add_model_name(0))
            assert client.get_model_metadata(add_model_name(0))["versions"] == ["1"]
            assert client.get_model_config(add_model_name(1))["max_batch_size"] == 8
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
            assert not grpc_client.is_model_ready(add_model_name(2))
            assert grpc_client.get_model_metadata(add_model_name(2)).versions == ["1"]
            assert grpc_client.is_model_ready(add_model_name(2))
        assert scrape(metrics).loads == {add_model_name(i): 1 for i in range(3)}


def test_concurrent_first_requests_share_one_load(tmp_path: Path) -> None:
    write_add_model(tmp_path / "repo", 7)
    with on_demand_server(tmp_path / "repo", tmp_path / "server.log") as (server, metrics):
        start = threading.Barrier(12)

        def first_request(_: int) -> None:
            with http(server) as client:
                start.wait(timeout=10)
                infer_add(client, 7)

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(first_request, range(12)))
        assert scrape(metrics).loads == {add_model_name(7): 1}
        assert server.log().count("loading 'add_007' on demand") == 1


def test_a_model_that_fails_to_load_answers_with_its_load_error(tmp_path: Path) -> None:
    write_broken_onnx(tmp_path / "repo")
    write_add_model(tmp_path / "repo", 1)
    with on_demand_server(tmp_path / "repo", tmp_path / "server.log", grpc=True) as (server, metrics):
        with http(server) as client:
            tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
            with pytest.raises(InferenceServerException) as failed:
                client.infer("broken_onnx", [tensor])
            assert failed.value.status() == "503"
            assert "failed to load model 'broken_onnx' on demand" in failed.value.message()
            with pytest.raises(InferenceServerException) as unknown:
                client.infer("no_such_model", [tensor])
            assert unknown.value.status() == "404"
            infer_add(client, 1)  # the others still load and serve
            assert client.is_server_ready(), "a request for a broken model does not unready the server"
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
            tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
            with pytest.raises(InferenceServerException) as failed:
                grpc_client.infer("broken_onnx", [tensor])
            assert failed.value.status() == "StatusCode.UNAVAILABLE"
        assert scrape(metrics).unavailable == {"broken_onnx"}, "a failed on-demand load shows as failed"


def test_budget_evicts_the_least_recently_used_model(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(4):
        write_add_model(repo, index)
    size = folder_size(repo / add_model_name(0))
    with on_demand_server(repo, tmp_path / "server.log", budget=2 * size) as (server, metrics):
        with http(server) as client:
            infer_add(client, 0)
            infer_add(client, 1)
            infer_add(client, 0)  # 1 is now the least recently used
            infer_add(client, 2)
            rows = index_rows(client)
            assert rows[add_model_name(0)]["state"] == "READY"
            assert rows[add_model_name(1)] == {"name": add_model_name(1), "version": "1",
                                               "state": "UNAVAILABLE", "reason": EVICTED}  # fmt: skip
            assert rows[add_model_name(2)]["state"] == "READY"
            infer_add(client, 3)  # 0 is the least recently used now
            rows = index_rows(client)
            assert rows[add_model_name(0)]["reason"] == EVICTED
            ready = {name for name, row in rows.items() if row["state"] == "READY"}
            assert ready == {add_model_name(2), add_model_name(3)}
            infer_add(client, 1)  # an evicted model loads again on its next request
        figures = scrape(metrics)
        assert figures.evictions == {add_model_name(1): 1, add_model_name(0): 1, add_model_name(2): 1}
        assert figures.loads[add_model_name(1)] == 2
        assert figures.resident_total <= 2 * size
        assert not figures.unavailable, "an evicted model is not reported as failed"


def test_a_budget_without_on_demand_applies_to_api_loads_in_order_of_use(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(3):
        write_add_model(repo, index)
    size = folder_size(repo / add_model_name(0))
    with (
        on_demand_server(repo, tmp_path / "server.log", budget=2 * size, on_demand=False) as (server, _),
        http(server) as client,
    ):
        with pytest.raises(InferenceServerException) as not_loaded:
            infer_add(client, 0)
        assert not_loaded.value.status() != "200", "without --load-on-demand a request loads nothing"
        client.load_model(add_model_name(0))
        client.load_model(add_model_name(1))
        infer_add(client, 0)  # used after 1 was loaded: 1 is the least recently used
        client.load_model(add_model_name(2))
        rows = index_rows(client)
        assert rows[add_model_name(1)]["reason"] == EVICTED
        assert rows[add_model_name(0)]["state"] == rows[add_model_name(2)]["state"] == "READY"


def test_a_pinned_model_is_never_evicted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_add_model(repo, 0, pinned=True)
    for index in range(1, 4):
        write_add_model(repo, index)
    size = folder_size(repo / add_model_name(1))
    assert folder_size(repo / add_model_name(0)) == size
    with (
        on_demand_server(repo, tmp_path / "server.log", budget=2 * size) as (server, _),
        http(server) as client,
    ):
        for index in (0, 1, 2, 3):  # the pinned model stays the least recently used throughout
            infer_add(client, index)
            assert index_rows(client)[add_model_name(0)]["state"] == "READY"
        # Only the pinned model's room is left: a model that cannot fit says so, naming the budget.
        client.unload_model(add_model_name(3))
        write_add_model(repo, 200)
        (repo / add_model_name(200) / "1" / "padding.bin").write_bytes(b"\0" * (size + 1))
        with pytest.raises(InferenceServerException) as too_big:
            infer_add(client, 200)
        assert too_big.value.status() == "503"
        assert f"memory budget of {2 * size} bytes (--model-memory-budget)" in too_big.value.message()


def test_a_busy_model_is_not_evicted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_sleepy_model(repo, instances=1)
    for index in range(2):
        write_add_model(repo, index)
    budget = folder_size(repo / "sleepy") + folder_size(repo / add_model_name(0))
    with (
        on_demand_server(repo, tmp_path / "server.log", budget=budget) as (server, _),
        http(server) as client,
    ):
        seconds = httpclient.InferInput("IN", [1], "FP32")
        seconds.set_data_from_numpy(np.array([2.0], dtype=np.float32))
        client.infer("sleepy", [seconds])  # loaded; then the least recently used
        infer_add(client, 0)

        def sleep_on_server() -> list[float]:
            with http(server) as own:  # a client per thread
                return list(own.infer("sleepy", [seconds]).as_numpy("OUT"))

        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(sleep_on_server)
            time.sleep(0.5)
            infer_add(client, 1)  # room is made by evicting add_000, not the busy model
            assert busy.result() == [2.0]
        rows = index_rows(client)
        assert rows["sleepy"]["state"] == "READY"
        assert rows[add_model_name(0)]["reason"] == EVICTED


def test_two_hundred_models_under_a_budget_for_twenty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for index in range(200):
        write_add_model(repo, index)
    size = folder_size(repo / add_model_name(0))
    budget = 20 * size
    rng = random.Random(16)
    hot = rng.sample(range(200), 12)  # most traffic goes to a few models, the rest is spread out
    plan = [rng.choice(hot) if rng.random() < 0.7 else rng.randrange(200) for _ in range(600)]
    with on_demand_server(repo, tmp_path / "server.log", budget=budget) as (server, metrics):
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                figures = scrape(metrics)
                samples.append((figures.resident_total, figures.process_rss))
                time.sleep(0.02)

        def client_run(part: list[int]) -> None:
            with http(server) as client:
                for index in part:
                    infer_add(client, index, rows=rng.randint(1, 4))

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(client_run, [plan[i::4] for i in range(4)]))  # raises on any failed request
        finally:
            done.set()
            sampler.join(10)
        elapsed = time.monotonic() - started
        final = scrape(metrics)
    held = [resident for resident, _ in samples]
    print(f"\n600 requests over 200 models in {elapsed:.1f}s; budget {budget} B; "
          f"resident max {max(held):.0f} B "
          f"over {len(samples)} samples; loads {sum(final.loads.values()):.0f}, evictions "
          f"{sum(final.evictions.values()):.0f}; RSS {min(r for _, r in samples) / 2**20:.0f}.."
          f"{max(r for _, r in samples) / 2**20:.0f} MiB")  # fmt: skip
    assert len(samples) >= 10
    assert max(held) <= budget
    assert final.resident_total <= budget
    assert sum(final.evictions.values()) > 0
    assert len(final.resident) <= 20
    # 70% of the requests go to 12 models that fit together: kept resident by LRU, they load about
    # once each, so loads stay near the spread-out requests' count (about 180), far from 600.
    assert sum(final.loads.values()) < 300
