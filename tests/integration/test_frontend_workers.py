"""--frontend-workers: worker processes own the ports and hand every request to one engine process.

Most checks share one server with 2 workers (HTTP, gRPC, metrics; gRPC inference and the model
repository restricted). Which worker holds a connection is read from /proc (the server-side end
of the client's TCP connection), so nothing in the answers has to say it. The shutdown and
engine-kill checks run servers of their own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_sleepy_model
from support.server import HOST, ServerProcess, free_port, http_status, running_server

if not sys.platform.startswith("linux"):
    pytest.skip("the checks read /proc", allow_module_level=True)

WORKERS = 2
ADMIN = {"admin-key": "s3cret"}
GRPC_ADMIN = {"triton-grpc-protocol-admin-key": "s3cret"}
GRPC_INFER = {"triton-grpc-protocol-infer-key": "letmein"}
FLAGS = [
    f"--frontend-workers={WORKERS}",
    "--http-restricted-api=model-repository:admin-key=s3cret",
    "--grpc-restricted-protocol=model-repository:admin-key=s3cret",
    "--grpc-restricted-protocol=inference:infer-key=letmein",
]
MAX_CONNECTIONS = 24  # fresh connections tried before every worker must have had one
X = np.arange(16, dtype=np.float32).reshape(1, 16)
Y = np.full((1, 16), 3, dtype=np.float32)
T = TypeVar("T")


# --- the processes and their connections, from /proc -------------------------------------
def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def server_ends(port: int) -> dict[int, int]:
    """client port -> inode of the server's end, for the established connections to `port`."""
    ends = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    ends[int(remote.rsplit(":", 1)[1], 16)] = inode
    return ends


def worker_of(sock: socket.socket, server_port: int, workers: set[int]) -> int:
    """The worker process holding the server's end of `sock`'s connection."""
    inode = server_ends(server_port)[sock.getsockname()[1]]
    [worker] = [pid for pid in workers if inode in socket_inodes(pid)]
    return worker


def workers_holding(server_port: int, workers: set[int]) -> set[int]:
    inodes = set(server_ends(server_port).values())
    return {pid for pid in workers if socket_inodes(pid) & inodes}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the probes' TIME_WAIT
        try:
            sock.bind((HOST, port))
            sock.listen()
        except OSError:
            return False  # the kernel may take a moment to drop a dead process's listening sockets
    return True


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("workers_repo")
    small_models.write_add_sub(repo)
    counted = repo / "counted"  # add_sub under a name only the counting test sends to
    shutil.copytree(repo / "add_sub", counted)
    config = counted / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "add_sub"', 'name: "counted"'))
    write_sleepy_model(repo, instances=4)
    return repo


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(
    repo: Path, metrics_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("workers_logs") / "server.log"
    metrics = ["--allow-metrics=true", f"--metrics-port={metrics_port}", f"--metrics-address={HOST}"]
    with running_server(repo, log, [*FLAGS, *metrics], grpc=True) as server:
        wait_for(lambda: len(children(server.pid)) == WORKERS, 10, "the workers")
        yield server
    assert "Traceback" not in server.log(), server.log()[-4000:]


def workers(server: ServerProcess, without: int = 0) -> set[int]:
    """The server's worker processes, once there are WORKERS of them (and `without` is not one)."""

    def complete() -> set[int] | None:
        found = children(server.pid)
        return found if len(found) == WORKERS and without not in found else None

    return wait_for(complete, 10, "the workers")


# --- requests through every worker ----------------------------------------------------------
def grpc_client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    """A client with a TCP connection of its own (channels of one process share them by default)."""
    return grpcclient.InferenceServerClient(
        server.grpc_url, channel_args=[("grpc.use_local_subchannel_pool", 1)]
    )


def json_infer_body(model: str = "add_sub") -> bytes:
    tensors = [
        {"name": name, "shape": [1, 16], "datatype": "FP32", "data": value.ravel().tolist()}
        for name, value in (("INPUT0", X), ("INPUT1", Y))
    ]
    return json.dumps({"inputs": tensors}).encode()


def http_inputs(binary: bool) -> list[httpclient.InferInput]:
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "FP32"),
        httpclient.InferInput("INPUT1", [1, 16], "FP32"),
    ]
    inputs[0].set_data_from_numpy(X, binary_data=binary)
    inputs[1].set_data_from_numpy(Y, binary_data=binary)
    return inputs


def post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str] | None = None
) -> Any:
    conn.request("POST", path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.headers, response.read()  # headers: any case


def test_http_requests_reach_every_worker_json_and_binary(server: ServerProcess) -> None:
    pids = workers(server)
    seen: set[int] = set()
    for _ in range(MAX_CONNECTIONS):
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        try:
            status, _, body = post(conn, "/v2/models/add_sub/infer", json_infer_body())
            assert status == 200, body
            outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
            assert outputs["OUTPUT0"] == (X + Y).ravel().tolist()
            assert outputs["OUTPUT1"] == (X - Y).ravel().tolist()
            outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("OUTPUT0", "OUTPUT1")]
            request, json_size = httpclient.InferenceServerClient.generate_request_body(
                http_inputs(True), outputs
            )
            headers = {"Inference-Header-Content-Length": str(json_size)}
            status, answer_headers, body = post(conn, "/v2/models/add_sub/infer", request, headers)
            assert status == 200, body
            length = int(answer_headers["Inference-Header-Content-Length"])
            result = httpclient.InferenceServerClient.parse_response_body(body, header_length=length)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X + Y)
            seen.add(worker_of(conn.sock, server.port, pids))
        finally:
            conn.close()
        if seen == pids:
            break
    assert seen == pids


def test_grpc_calls_reach_every_worker(server: ServerProcess) -> None:
    pids = workers(server)
    clients = []
    try:
        for _ in range(MAX_CONNECTIONS):
            client = grpc_client(server)
            clients.append(client)
            inputs = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            inputs[0].set_data_from_numpy(X)
            inputs[1].set_data_from_numpy(Y)
            result = client.infer("add_sub", inputs, headers=GRPC_INFER)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X - Y)
            if workers_holding(server.grpc_port, pids) == pids:
                break
        assert workers_holding(server.grpc_port, pids) == pids
        # The engine checks a restricted ModelInfer as the gRPC interceptor does.
        with pytest.raises(InferenceServerException) as refused:
            clients[0].infer("add_sub", inputs)
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        assert "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'" in str(
            refused.value
        )
        with pytest.raises(InferenceServerException) as missing:
            clients[0].infer("no_such_model", inputs, headers=GRPC_INFER)
        assert missing.value.status() == "StatusCode.NOT_FOUND"
    finally:
        for client in clients:
            client.close()


def connections_on_two_workers(server: ServerProcess) -> tuple[http.client.HTTPConnection, ...]:
    pids = workers(server)
    by_worker: dict[int, http.client.HTTPConnection] = {}
    for _ in range(MAX_CONNECTIONS):
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        conn.request("GET", "/v2/health/live")
        conn.getresponse().read()
        worker = worker_of(conn.sock, server.port, pids)
        if worker in by_worker:
            conn.close()
        else:
            by_worker[worker] = conn
        if len(by_worker) == 2:
            return tuple(by_worker.values())
    raise AssertionError("no two connections on different workers")


def test_shared_memory_registered_through_one_worker_used_through_another(server: ServerProcess) -> None:
    first, second = connections_on_two_workers(server)
    size = X.nbytes
    inputs = shm.create_shared_memory_region("in_region", "/mp_workers_in", 2 * size)
    outputs = shm.create_shared_memory_region("out_region", "/mp_workers_out", 2 * size)
    try:
        shm.set_shared_memory_region(inputs, [X, Y])
        for name, key in (("in_region", "/mp_workers_in"), ("out_region", "/mp_workers_out")):
            body = json.dumps({"key": key, "offset": 0, "byte_size": 2 * size}).encode()
            status, _, answer = post(first, f"/v2/systemsharedmemory/region/{name}/register", body)
            assert status == 200, answer

        def region(name: str, offset: int) -> dict[str, Any]:
            return {
                "shared_memory_region": name,
                "shared_memory_byte_size": size,
                "shared_memory_offset": offset,
            }

        request = {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "FP32",
                    "parameters": region("in_region", 0),
                },
                {
                    "name": "INPUT1",
                    "shape": [1, 16],
                    "datatype": "FP32",
                    "parameters": region("in_region", size),
                },
            ],
            "outputs": [
                {"name": "OUTPUT0", "parameters": region("out_region", 0)},
                {"name": "OUTPUT1", "parameters": region("out_region", size)},
            ],
        }
        status, _, answer = post(second, "/v2/models/add_sub/infer", json.dumps(request).encode())
        assert status == 200, answer
        np.testing.assert_array_equal(shm.get_contents_as_numpy(outputs, np.float32, [1, 16]), X + Y)
        status, _, answer = post(first, "/v2/systemsharedmemory/unregister", b"")
        assert status == 200, answer
    finally:
        first.close()
        second.close()
        shm.destroy_shared_memory_region(inputs)
        shm.destroy_shared_memory_region(outputs)


# --- one engine: statistics and metrics count everything -------------------------------------
def metric(port: int, name: str, model: str) -> float:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"http://{HOST}:{port}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}",'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {model} not in the metrics")


def test_statistics_and_metrics_count_the_traffic_of_every_worker(
    server: ServerProcess, metrics_port: int
) -> None:
    http_calls, grpc_calls = 10, 6
    for _ in range(http_calls):  # a fresh connection each, so both workers take part
        with httpclient.InferenceServerClient(server.http_url) as client:
            client.infer("counted", http_inputs(binary=True))
    for _ in range(grpc_calls):
        with grpc_client(server) as client:
            inputs = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            inputs[0].set_data_from_numpy(X)
            inputs[1].set_data_from_numpy(Y)
            client.infer("counted", inputs, headers=GRPC_INFER)
    total = http_calls + grpc_calls
    with httpclient.InferenceServerClient(server.http_url) as client:
        [stats] = client.get_inference_statistics("counted")["model_stats"]
    assert stats["inference_count"] == total
    with grpcclient.InferenceServerClient(server.grpc_url) as client:  # a passed-through RPC
        [grpc_stats] = client.get_inference_statistics("counted").model_stats
    assert grpc_stats.inference_count == total
    assert metric(metrics_port, "nv_inference_request_success", "counted") == total


# --- the other RPCs, streaming and restrictions through a worker ---------------------------
def test_stream_repository_and_restricted_calls_through_workers(server: ServerProcess) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(lambda result, error: answers.put((result, error)), headers=GRPC_INFER)
        for i in range(3):
            inputs = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            inputs[0].set_data_from_numpy(X * i)
            inputs[1].set_data_from_numpy(Y)
            client.async_stream_infer("add_sub", inputs, request_id=str(i))
        results = {}
        for _ in range(3):
            result, error = answers.get(timeout=30)
            assert error is None
            results[result.get_response().id] = result.as_numpy("OUTPUT0")
        client.stop_stream()
        for i in range(3):
            np.testing.assert_array_equal(results[str(i)], X * i + Y)
        index = client.get_model_repository_index(headers=GRPC_ADMIN)
        assert {m.name: m.state for m in index.models}["add_sub"] == "READY"
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_repository_index()
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        assert "expecting header 'triton-grpc-protocol-admin-key'" in str(refused.value)
        assert client.get_model_metadata("add_sub").name == "add_sub"
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        status, headers, body = post(conn, "/v2/repository/index", b"{}")
        assert (status, json.loads(body)) == (
            403,
            {"error": "This API is restricted, expecting header 'admin-key'"},
        )
        assert headers["content-type"] == "application/json"
        status, _, body = post(conn, "/v2/repository/index", b"{}", ADMIN)
        assert status == 200 and {m["name"] for m in json.loads(body)} >= {"add_sub", "counted", "sleepy"}
        status, _, body = post(conn, "/v2/models/add_sub/infer", b"x" * 100, {"Content-Encoding": "br"})
        assert status == 501  # the engine's own refusal, with its status
    finally:
        conn.close()


def test_a_body_over_the_limit_is_refused_by_the_worker(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.putrequest("POST", "/v2/models/add_sub/infer")
        conn.putheader("Content-Length", str(64 * 1024 * 1024 + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert b"--http-max-input-size" in response.read()
    finally:
        conn.close()


# --- a worker that dies is replaced --------------------------------------------------------------
def test_a_killed_worker_is_started_again(server: ServerProcess) -> None:
    before = workers(server)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = workers(server, without=victim)
    [new] = after - before

    def served_by_new_worker() -> bool:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        try:
            status, _, body = post(conn, "/v2/models/add_sub/infer", json_infer_body())
            assert status == 200, body
            return worker_of(conn.sock, server.port, after) == new
        except OSError:
            return False  # a connection the dead worker had accepted: the client tries again
        finally:
            conn.close()

    wait_for(served_by_new_worker, 20, "an answer from the new worker")
    assert "exited with signal SIGKILL" in server.log() and "starting it again" in server.log()


# --- stopping ------------------------------------------------------------------------------------
def test_sigterm_drains_requests_in_flight_through_workers(repo: Path, tmp_path: Path) -> None:
    with running_server(repo, tmp_path / "drain.log", FLAGS, grpc=True) as server:
        pids = workers(server)

        def slow_call(seconds: float) -> Any:
            with httpclient.InferenceServerClient(server.http_url, network_timeout=30) as client:
                tensor = httpclient.InferInput("IN", [1], "FP32")
                tensor.set_data_from_numpy(np.array([seconds], dtype=np.float32))
                return client.infer("sleepy", [tensor]).as_numpy("OUT")[0]

        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(slow_call, 1.0) for _ in range(4)]
            time.sleep(0.4)  # all four are running
            os.kill(server.pid, signal.SIGTERM)
            time.sleep(0.1)
            # The workers keep their ports through the drain: readiness says no, liveness yes.
            assert http_status(f"{server.base_url}/v2/health/ready") == 400
            assert http_status(f"{server.base_url}/v2/health/live") == 200
            assert [call.result(timeout=30) for call in calls] == [1.0] * 4
        assert server.stop(timeout=15) == 0
    assert not any(alive(pid) for pid in pids)


def test_a_killed_engine_takes_its_workers_along(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, tmp_path / "killed.log", tuple(FLAGS), grpc=True)
    server.start()
    pids: set[int] = set()
    try:
        pids = workers(server)
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=10)  # type: ignore[union-attr]
        wait_for(lambda: not any(alive(pid) for pid in pids), 3, "the workers to exit")
        wait_for(lambda: port_is_free(server.port), 3, "the port to be free")  # nothing listens on it
    finally:
        server.kill()
        for pid in pids:
            if alive(pid):  # only when the check above failed
                os.kill(pid, signal.SIGKILL)


def test_a_busy_port_fails_startup_with_workers(repo: Path) -> None:
    for flag in ("--http-port", "--grpc-port"):
        with socket.socket() as busy:
            busy.bind((HOST, 0))
            busy.listen()
            ports = {"--http-port": free_port(), "--grpc-port": free_port(), flag: busy.getsockname()[1]}
            result = subprocess.run(
                [sys.executable, "-m", "modelport", "serve", "--model-repository", str(repo),
                 "--http-address", HOST, "--grpc-address", HOST, "--allow-metrics=false",
                 f"--frontend-workers={WORKERS}", *(f"{k}={v}" for k, v in ports.items())],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        assert result.returncode == 1, result.stderr
        service = "HTTP" if flag == "--http-port" else "GRPC"
        assert f"failed to start {service} service" in result.stderr
