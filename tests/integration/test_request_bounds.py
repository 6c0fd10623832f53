"""One request must not stall the server: BYTES tensors are bounded by their shape before they are
decoded (elements of one length are split by numpy), and request heads are bounded.

Health latency is measured by a separate process polling /v2/health/live while a 60 MiB request is
in flight; the figures are printed (run with -s). Before, health waited 7.5-14 s for the decode of
60 MiB of zero-length elements. The bounds asserted leave room for a loaded machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc as grpcclient

from modelport.protocol import service_pb2 as pb
from support.models import small_models
from support.server import HOST, ServerProcess, running_server

# 60 MiB of zero-length BYTES elements: 15 Mi elements (7.5-14 s of decoding on the event loop before).
BIG = 60 << 20
ELEMENTS = BIG // 4
# A request refused for its shape: health waited for the whole decode before (7.5-14 s); now the
# request is refused after one element too many (measured 30-140 ms of health latency, unloaded).
HEALTH_BOUND_S = 0.5
# A request the size of the body limit that is decoded in full: memory copies and allocations of
# that size on the event loop (any 60 MiB request, FP32 too, measured 0.3 s) or materialising 15 Mi
# BYTES objects (0.1-0.45 s; was 7.5-14 s) still delay health by a few hundred milliseconds.
FULL_SIZE_BOUND_S = 2.0

_POLLER = """
import http.client, json, os, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection(host, port, timeout=60)
latencies = []
print("ready", flush=True)
while not os.path.exists(stop):
    started = time.perf_counter()
    conn.request("GET", "/v2/health/live")
    response = conn.getresponse()
    response.read()
    latencies.append(time.perf_counter() - started)
    assert response.status == 200, response.status
    time.sleep(0.005)
print(json.dumps(latencies), flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("bounds_repo")
    small_models.write_string_identity(repo)
    log = tmp_path_factory.mktemp("logs") / "bounds.log"
    # The default --http-max-input-size (64 MiB): the largest request the server takes.
    with running_server(repo, log, grpc=True) as proc:
        yield proc


def health_during(
    server: ServerProcess, tmp_path: Path, request: Callable[[], Any]
) -> tuple[Any, list[float]]:
    """Run `request` while another process polls health; its result and the health latencies."""
    stop = tmp_path / "stop-polling"
    poller = subprocess.Popen(
        [sys.executable, "-c", _POLLER, HOST, str(server.port), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert poller.stdout is not None
        assert poller.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        result = request()
        time.sleep(0.2)
        stop.touch()
        out, _ = poller.communicate(timeout=60)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    latencies = json.loads(out.strip().splitlines()[-1])
    assert len(latencies) > 10
    return result, latencies


def bytes_request(shape: list[int], blob: bytes) -> tuple[bytes, dict[str, str]]:
    params = {"binary_data_size": len(blob)}
    doc = {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": shape, "parameters": params}]}
    header = json.dumps(doc).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def post(server: ServerProcess, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    with httpx.Client(trust_env=False, timeout=120) as client:
        response = client.post(
            f"{server.base_url}/v2/models/string_identity/infer", content=body, headers=headers
        )
    return response, time.perf_counter() - started


def report(what: str, latencies: list[float], took: float) -> None:
    print(
        f"\n{what}: request {took * 1000:.0f} ms; health over {len(latencies)} polls: "
        f"max {max(latencies) * 1000:.1f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms"
    )


class TestBytesBoundedByShape:
    def test_elements_beyond_the_shape_are_refused_at_once(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        body, headers = bytes_request([1, 1], bytes(BIG))
        (response, took), latencies = health_during(server, tmp_path, lambda: post(server, body, headers))
        report("60 MiB of BYTES elements for shape [1,1]", latencies, took)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == (
            "unexpected number of string elements 2 for inference input 'INPUT0' for model "
            "'string_identity', expecting 1"
        )
        assert max(latencies) < HEALTH_BOUND_S

    def test_the_largest_request_the_model_takes(self, server: ServerProcess, tmp_path: Path) -> None:
        # string_identity takes [<=8, 1]: 8 elements of 7.5 MiB fill the 64 MiB body limit. Decoded,
        # run and answered (60 MiB back) while health keeps answering.
        elements = [bytes([65 + i]) * (BIG // 8 - 4) for i in range(8)]
        blob = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
        body, headers = bytes_request([8, 1], blob)
        headers["Content-Type"] = "application/octet-stream"
        (response, took), latencies = health_during(server, tmp_path, lambda: post(server, body, headers))
        report("60 MiB as 8 elements of 7.5 MiB, shape [8,1], run and answered", latencies, took)
        assert response.status_code == 200, response.text[:300]
        assert len(response.content) > BIG
        assert max(latencies) < FULL_SIZE_BOUND_S

    def test_millions_of_elements_with_a_matching_shape(self, server: ServerProcess, tmp_path: Path) -> None:
        # Every element accounted for by the shape, so all 15 Mi are decoded (then the model refuses
        # the shape). Elements of one length are split by numpy, in a fraction of a second where the
        # element-by-element walk took 7.5 s; materialising 15 Mi objects still costs some of it.
        body, headers = bytes_request([1, ELEMENTS], bytes(BIG))
        (response, took), latencies = health_during(server, tmp_path, lambda: post(server, body, headers))
        report(f"60 MiB, shape [1,{ELEMENTS}] of zero-length elements", latencies, took)
        assert response.status_code == 400, response.text
        assert "unexpected shape for input 'INPUT0' for model 'string_identity'" in response.json()["error"]
        assert max(latencies) < FULL_SIZE_BOUND_S

    def test_millions_of_elements_of_mixed_lengths_are_decoded_off_the_loop(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        # Lengths 0 and 1 alternate, so numpy's one-length split does not apply: each element is
        # walked, seconds of work that ran on the event loop (health waited ~3.5 s); now a worker
        # thread decodes while the loop answers.
        pair = (0).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"x"
        count = (BIG // len(pair)) * 2
        body, headers = bytes_request([1, count], pair * (count // 2))
        (response, took), latencies = health_during(server, tmp_path, lambda: post(server, body, headers))
        report(f"60 MiB, shape [1,{count}] of mixed-length elements", latencies, took)
        assert response.status_code == 400, response.text
        assert max(latencies) < FULL_SIZE_BOUND_S

    def test_grpc_raw_contents_beyond_the_shape(self, server: ServerProcess, tmp_path: Path) -> None:
        msg = pb.ModelInferRequest(model_name="string_identity", raw_input_contents=[bytes(BIG)])
        msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 1])

        def call() -> tuple[grpc.RpcError, float]:
            started = time.perf_counter()
            with (
                grpcclient.InferenceServerClient(server.grpc_url) as client,
                pytest.raises(grpc.RpcError) as info,
            ):
                client._client_stub.ModelInfer(msg, timeout=120)
            return info.value, time.perf_counter() - started

        (error, took), latencies = health_during(server, tmp_path, call)
        report("gRPC, 60 MiB of BYTES elements for shape [1,1]", latencies, took)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(
            "unexpected number of string elements 2 for inference input 'INPUT0'"
        )
        assert max(latencies) < HEALTH_BOUND_S


def send_head(server: ServerProcess, header_bytes: int) -> bytes:
    """Send a GET whose one header is `header_bytes` long, in 64 KiB writes; what the server answers."""
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Padding: "
    with socket.create_connection((HOST, server.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        chunk = b"a" * 65536
        try:
            while sent < header_bytes:
                sock.sendall(chunk[: header_bytes - sent])
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the head was complete
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                if b"\r\n\r\n" in answer and not answer.startswith(b"HTTP/1.1 431"):
                    break  # an ordinary answer on a kept-alive connection
        except ConnectionResetError:
            pass
    return answer


class TestRequestHead:
    def test_a_48_mib_header_is_refused(self, server: ServerProcess) -> None:
        started = time.perf_counter()
        answer = send_head(server, 48 << 20)
        took = time.perf_counter() - started
        print(f"\n48 MiB header: answered in {took * 1000:.0f} ms: {answer[:60]!r}")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"request line and headers exceed the limit of 65536 bytes" in answer
        assert took < 10
        with httpx.Client(trust_env=False) as client:
            assert client.get(f"{server.base_url}/v2/health/live").status_code == 200

    def test_a_large_but_sane_header_is_served(self, server: ServerProcess) -> None:
        answer = send_head(server, 32 << 10)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
