"""Random and malformed requests against a live server, over HTTP and gRPC.

Each request is a valid one with one mutation (a wrong datatype, shape or name, truncated or extra
binary data, broken JSON, a bad header, an unknown model or version, a repository call with an odd
name, raw protobuf garbage...). The server must answer every one without a 5xx for a client
mistake (500 / gRPC INTERNAL or UNKNOWN), stay up, keep serving valid requests, and not grow its
memory without bound. `make test` sends a few hundred; MODELPORT_FUZZ_LIVE=<count> runs a longer
campaign (e.g. 10000) and prints the figures.
"""

from __future__ import annotations

import collections
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelport.protocol import service_pb2 as pb
from support.models import small_models
from support.server import ServerProcess, running_server

COUNT = int(os.environ.get("MODELPORT_FUZZ_LIVE", "400"))
SEED = int(os.environ.get("MODELPORT_FUZZ_SEED", "20261204"))
DATATYPES = ["FP32", "FP16", "INT64", "BYTES", "BOOL", "UINT8", "BF16", "FP64", "NOPE", ""]
SERVICE = "/inference.GRPCInferenceService/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("fuzz_repo")
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    log = tmp_path_factory.mktemp("logs") / "fuzz_server.log"
    args = ("--model-control-mode=explicit", "--load-model=*", "--http-max-input-size=4194304")
    with running_server(repo, log, args, grpc=True) as proc:
        yield proc


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- HTTP ----------------------------------------------------------------------------------------
def valid_doc() -> dict[str, Any]:
    data = list(np.arange(16, dtype=np.float32).tolist())
    return {
        "id": "fuzz",
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": data},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 16], "data": data},
        ],
    }


def http_case(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of one mutated HTTP request."""
    doc = valid_doc()
    item = doc["inputs"][rng.randrange(2)]
    path, headers = "/v2/models/add_sub/infer", {"content-type": "application/json"}
    kind = rng.randrange(16)
    if kind == 0:
        item["datatype"] = rng.choice(DATATYPES)
    elif kind == 1:
        dims = [-1, 0, 1, 2, 16, 2**31, 2**62, "x"]
        item["shape"] = [rng.choice(dims) for _ in range(rng.randrange(0, 70))]
    elif kind == 2:
        item["data"] = rng.choice([[], [[1.0] * 16], "text", None, {"a": 1}, [1.0] * 17, [True] * 16])
    elif kind == 3:
        item["name"] = rng.choice(["", "INPUT9", "INPUT0\n", "x" * 300])
    elif kind == 4:  # binary extension with wrong sizes
        item.pop("data")
        item["parameters"] = {"binary_data_size": rng.choice([-1, 0, 63, 64, 65, 10**9])}
        header = json.dumps(doc).encode()
        headers["inference-header-content-length"] = str(rng.choice([len(header), len(header) + 7, -3, 0]))
        return "POST", path, headers, header + bytes(rng.randrange(0, 128))
    elif kind == 5:
        raw = json.dumps(doc).encode()
        return "POST", path, headers, raw[: rng.randrange(len(raw))]
    elif kind == 6:
        return "POST", path, headers, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
    elif kind == 7:
        path = rng.choice(["/v2/models/nope/infer", "/v2/models/add_sub/versions/9/infer",
                           "/v2/models/add_sub/versions/x/infer", "/v2/models/%2e%2e/infer"])
    elif kind == 8:
        headers["content-encoding"] = rng.choice(["gzip", "deflate", "br", "zstd"])
    elif kind == 9:
        doc["parameters"] = {rng.choice(["priority", "timeout", "sequence_id", "binary_data_output"]):
                             rng.choice([-1, 2**70, "x", None, 1.5, True])}
    elif kind == 10:
        doc["outputs"] = [{"name": rng.choice(["OUTPUT0", "NOPE", ""]),
                           "parameters": {"classification": rng.choice([-1, 0, 3, 10**6, "x"])}}]
    elif kind == 11:  # repository API with odd names and files
        name = rng.choice(["..", ".", "a/b", "add_sub", "nope", "%00", "x" * 300])
        body = {"parameters": {"config": rng.choice(["{", "{}", '{"backend": "python"}', 5]),
                               "file:../escape": "eA=="}}
        return "POST", f"/v2/repository/models/{name}/load", headers, json.dumps(body).encode()
    elif kind == 12:
        setting = {"trace_rate": rng.choice(["-5", "x", 0])}
        return "POST", "/v2/trace/setting", headers, json.dumps(setting).encode()
    elif kind == 13:
        path = "/v2/models/string_identity/infer"
        doc = {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1],
                           "data": rng.choice([[["a"]], [[1]], [[[[["deep"]]]]], [None]])}]}
    elif kind == 14:
        return rng.choice(["GET", "PUT", "DELETE"]), path, headers, b""
    else:
        return "POST", path, headers, json.dumps(doc).encode()  # a valid request now and then
    return "POST", path, headers, json.dumps(doc).encode()


# --- gRPC ----------------------------------------------------------------------------------------
def grpc_case(rng: random.Random) -> tuple[str, bytes]:
    """(method, serialized request) of one mutated gRPC call."""
    msg = pb.ModelInferRequest(model_name=rng.choice(["add_sub", "add_sub", "nope", ""]), id="fuzz")
    msg.model_version = rng.choice(["", "", "1", "9", "x"])
    for name in ("INPUT0", "INPUT1"):
        tensor = msg.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        msg.raw_input_contents.append(np.ones(16, np.float32).tobytes())
        if rng.random() < 0.3:
            tensor.datatype = rng.choice(DATATYPES)
        if rng.random() < 0.3:
            del tensor.shape[:]
            tensor.shape.extend(rng.choice([-1, 0, 2, 16, 2**40]) for _ in range(rng.randrange(0, 70)))
    kind = rng.randrange(6)
    if kind == 0:
        msg.raw_input_contents[rng.randrange(2)] = bytes(rng.randrange(0, 80))
    elif kind == 1:
        del msg.raw_input_contents[:]
        msg.inputs[0].contents.fp32_contents.extend([1.0] * rng.choice([0, 15, 16, 17]))
    elif kind == 2:
        msg.parameters["timeout"].int64_param = rng.choice([-1, 0, 2**62])
    elif kind == 3:
        msg.inputs[0].parameters["shared_memory_region"].string_param = "nope"
    elif kind == 4:
        return SERVICE + "ModelInfer", bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 120)))
    if rng.random() < 0.1:
        load = pb.RepositoryModelLoadRequest(model_name=rng.choice(["..", ".", "a/b", "nope"]))
        return SERVICE + "RepositoryModelLoad", load.SerializeToString()
    return SERVICE + "ModelInfer", msg.SerializeToString()


def run_campaign(server: ServerProcess, count: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    statuses: collections.Counter[str] = collections.Counter()
    bad: list[str] = []
    rss_before = rss_kib(server.pid)
    rss_peak = rss_before
    with (
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as http,
        grpc.insecure_channel(server.grpc_url) as channel,
    ):
        for index in range(count):
            if index % 2 == 0:
                method, path, headers, body = http_case(rng)
                answer = http.request(method, path, headers=headers, content=body)
                statuses[f"http {answer.status_code}"] += 1
                if answer.status_code == 500:
                    bad.append(f"HTTP {method} {path} {body[:120]!r} -> {answer.text[:200]}")
            else:
                rpc, payload = grpc_case(rng)
                call = channel.unary_unary(rpc, request_serializer=None, response_deserializer=None)
                try:
                    call(payload, timeout=30)
                    statuses["grpc OK"] += 1
                except grpc.RpcError as exc:
                    code = exc.code()
                    statuses[f"grpc {code.name}"] += 1
                    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                        bad.append(f"gRPC {rpc} {payload[:80]!r} -> {code.name}: {exc.details()[:200]}")
            if index % 200 == 0:
                rss_peak = max(rss_peak, rss_kib(server.pid))
        live = http.get("/v2/health/live").status_code
    rss = (rss_before, rss_peak, rss_kib(server.pid))
    return {"statuses": statuses, "bad": bad, "live": live, "rss_kib": rss}


def test_malformed_requests_get_client_errors_and_the_server_stays_up(server: ServerProcess) -> None:
    result = run_campaign(server, COUNT)
    before, peak, after = result["rss_kib"]
    print(f"\nfuzz: {COUNT} requests (seed {SEED}): {dict(sorted(result['statuses'].items()))}")
    print(f"fuzz: RSS before {before >> 10} MiB, peak {peak >> 10} MiB, after {after >> 10} MiB")
    assert result["live"] == 200
    assert result["bad"] == [], "\n".join(sorted(result["bad"])[:40])
    assert server.process is not None and server.process.poll() is None  # no crash
    assert after < before + 200 * 1024  # memory does not grow without bound
