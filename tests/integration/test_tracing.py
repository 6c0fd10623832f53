"""Tracing: the trace extension's settings, sampling, Triton-mode trace files and OpenTelemetry spans.

* In process, an InferenceServer with an in-memory span exporter serves the HTTP app through
  httpx: a client's W3C traceparent must appear as the parent of the exported spans.
* A real server process exports over OTLP/HTTP to a small receiver in this test (loopback).
* A real server answers the settings endpoints with Triton's JSON and writes Triton-mode traces.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelport.cli.trace_flags import parse_trace_config
from modelport.config.settings import ServerSettings, TraceConfig
from modelport.core.server import InferenceServer
from modelport.errors import InvalidInput
from modelport.frontends.http.app import create_http_app
from modelport.observability.tracing import (
    TraceSetting,
    TraceSettings,
    Tracing,
    traceparent_from_metadata,
)
from support.models import small_models
from support.server import HOST, ServerProcess, running_server

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
TRITON_DEFAULT = {
    "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
    "trace_file": "", "trace_mode": "triton",
}


def add_sub_body(request_id: str = "") -> dict[str, Any]:
    data = [1.0] * 16
    body: dict[str, Any] = {"inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": data},
        {"name": "INPUT1", "datatype": "FP32", "shape": [1, 16], "data": data},
    ]}
    if request_id:
        body["id"] = request_id
    return body


# --- in process, with an in-memory exporter -------------------------------------------------------


@pytest.fixture
async def traced_app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, InferenceServer]]:
    exporters = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    small_models.write_add_sub(tmp_path)
    config = TraceConfig(level=("TIMESTAMPS",), rate=1, mode="opentelemetry")
    settings = ServerSettings(model_repositories=(tmp_path,), trace_config=config)
    exporter = exporters.InMemorySpanExporter()
    server = InferenceServer(settings, tracing=Tracing(config, otel_exporter=exporter))
    await server.start()
    transport = httpx.ASGITransport(app=create_http_app(server))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
            yield client, exporter, server
    finally:
        server.begin_shutdown()
        await server.stop()


async def test_client_traceparent_is_the_parent_of_exported_spans(
    traced_app: tuple[httpx.AsyncClient, Any, InferenceServer],
) -> None:
    client, exporter, _ = traced_app
    response = await client.post(
        "/v2/models/add_sub/infer", json=add_sub_body("traced-1"), headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200, response.text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"InferRequest", "queue", "compute"}
    root = spans["InferRequest"]
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT_SPAN
    assert root.parent.is_remote
    assert root.attributes["triton.model_name"] == "add_sub"
    assert root.attributes["triton.model_version"] == "1"
    assert root.attributes["triton.request_id"] == "traced-1"
    for child in (spans["queue"], spans["compute"]):
        assert child.context.trace_id == root.context.trace_id
        assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert root.start_time <= spans["queue"].start_time <= spans["queue"].end_time
    assert spans["queue"].end_time == spans["compute"].start_time
    assert spans["compute"].end_time <= root.end_time
    assert [event.name for event in spans["compute"].events] == ["COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"]
    assert time.time_ns() - root.start_time < 60 * 10**9  # wall-clock timestamps


async def test_without_traceparent_a_new_trace_starts(
    traced_app: tuple[httpx.AsyncClient, Any, InferenceServer],
) -> None:
    client, exporter, _ = traced_app
    assert (await client.post("/v2/models/add_sub/infer", json=add_sub_body())).status_code == 200
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "InferRequest"]
    assert root.parent is None
    assert format(root.context.trace_id, "032x") != TRACE_ID


async def test_rate_count_and_level_control_sampling(
    traced_app: tuple[httpx.AsyncClient, Any, InferenceServer],
) -> None:
    client, exporter, server = traced_app

    async def roots(requests: int) -> int:
        exporter.clear()
        for _ in range(requests):
            assert (await client.post("/v2/models/add_sub/infer", json=add_sub_body())).status_code == 200
        return len([s for s in exporter.get_finished_spans() if s.name == "InferRequest"])

    await client.post("/v2/models/add_sub/trace/setting", json={"trace_rate": "3"})
    assert await roots(7) == 3  # requests 1, 4 and 7
    await client.post("/v2/models/add_sub/trace/setting", json={"trace_rate": None, "trace_count": "2"})
    assert await roots(5) == 2
    setting = (await client.get("/v2/models/add_sub/trace/setting")).json()
    assert setting["trace_count"] == "0" and setting["trace_rate"] == "1"
    assert await roots(2) == 0  # this model's count is used up; the global setting is still on
    assert server.tracing.active
    await client.post("/v2/models/add_sub/trace/setting", json={"trace_count": None})
    await client.post("/v2/trace/setting", json={"trace_level": ["OFF"]})
    assert not server.tracing.active  # every level OFF: back to zero cost
    assert await roots(3) == 0


async def test_tracing_off_costs_no_trace_objects(tmp_path: Path) -> None:
    small_models.write_add_sub(tmp_path)
    settings = ServerSettings(model_repositories=(tmp_path,))
    server = InferenceServer(settings)
    await server.start()
    try:
        assert server.tracing.active is False
        from modelport.codecs import json_v2

        request = json_v2.decode_request(json.dumps(add_sub_body()).encode(), None, "add_sub", "")
        await server.infer(request, traceparent=TRACEPARENT)
        assert request.trace is None
    finally:
        server.begin_shutdown()
        await server.stop()


# --- a real server exporting over OTLP/HTTP ---------------------------------------------------------


class _OtlpReceiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.bodies.append(self.rfile.read(length))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[bytes]]]:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    receiver = http.server.ThreadingHTTPServer((HOST, 0), _OtlpReceiver)
    receiver.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{receiver.server_address[1]}/v1/traces", receiver.bodies  # type: ignore[attr-defined]
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(timeout=5)


def test_server_exports_spans_over_otlp_with_the_client_trace(
    otlp_receiver: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    url, bodies = otlp_receiver
    small_models.write_add_sub(tmp_path / "repo")
    args = [
        "--trace-config", "mode=opentelemetry", "--trace-config", "level=TIMESTAMPS",
        "--trace-config", "rate=1", "--trace-config", f"opentelemetry,url={url}",
        "--trace-config", "opentelemetry,bsp-schedule-delay=50",
        "--trace-config", "opentelemetry,resource=deployment.environment=test",
    ]
    with running_server(tmp_path / "repo", tmp_path / "server.log", args) as server:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as raw:
            response = raw.post("/v2/models/add_sub/infer", json=add_sub_body("otlp-1"),
                                headers={"traceparent": TRACEPARENT})
            assert response.status_code == 200
            assert raw.get("/v2/trace/setting").json()["trace_mode"] == "opentelemetry"
        deadline = time.monotonic() + 15
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.05)
    spans = []
    resources = []
    for body in bodies:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resources.append({a.key: a.value.string_value for a in resource_spans.resource.attributes})
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"InferRequest", "queue", "compute"}
    root = by_name["InferRequest"]
    assert root.trace_id.hex() == TRACE_ID
    assert root.parent_span_id.hex() == PARENT_SPAN
    assert by_name["compute"].parent_span_id == root.span_id
    assert {"service.name": "modelport", "deployment.environment": "test"}.items() <= resources[0].items()


# --- the settings endpoints and Triton-mode files on a real server -----------------------------------


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("trace_repo")
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    with running_server(repo, tmp_path_factory.mktemp("logs") / "trace_server.log") as proc:
        yield proc


def test_settings_endpoints_speak_tritons_json(plain_server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(plain_server.url) as client:
        assert client.get_trace_settings() == TRITON_DEFAULT
        assert client.get_trace_settings(model_name="add_sub") == TRITON_DEFAULT
        assert "trace" in client.get_server_metadata()["extensions"]
        try:
            updated = client.update_trace_settings(settings={"trace_rate": "50", "trace_count": "10"})
            assert updated == {**TRITON_DEFAULT, "trace_rate": "50", "trace_count": "10"}
            model = client.update_trace_settings(
                model_name="add_sub", settings={"trace_level": ["TIMESTAMPS"]}
            )
            assert model == {**updated, "trace_level": ["TIMESTAMPS"]}
            # a model without overrides follows the global settings, the other keeps its own
            client.update_trace_settings(settings={"trace_rate": "7"})
            assert client.get_trace_settings(model_name="string_identity")["trace_rate"] == "7"
            assert client.get_trace_settings(model_name="add_sub")["trace_level"] == ["TIMESTAMPS"]
            assert client.get_trace_settings(model_name="add_sub")["trace_rate"] == "7"
            # null clears a model's value (back to global) and a global one (back to startup)
            cleared = client.update_trace_settings(model_name="add_sub", settings={"trace_level": None})
            assert cleared["trace_level"] == ["OFF"]
            reset = client.update_trace_settings(settings={"trace_rate": None, "trace_count": None})
            assert reset == TRITON_DEFAULT
        finally:
            client.update_trace_settings(settings=dict.fromkeys(("trace_level", "trace_rate", "trace_count")))


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v2/trace/setting", {"trace_level": ["LOUD"]}, "invalid 'trace_level'"),
        ("/v2/trace/setting", {"trace_rate": "often"}, "expected an integer"),
        ("/v2/trace/setting", {"trace_count": "-2"}, "at least -1"),
        ("/v2/trace/setting", {"trace_mode": "opentelemetry"}, "only be chosen at startup"),
        ("/v2/trace/setting", {"trace_colour": "blue"}, "unknown trace setting"),
        ("/v2/models/nope/trace/setting", {}, "unknown model"),
    ],
)
def test_bad_trace_settings_are_refused(plain_server: ServerProcess, path: str, body: dict[str, Any],
                                        message: str) -> None:
    with httpx.Client(base_url=plain_server.base_url, trust_env=False, timeout=10) as raw:
        response = raw.post(path, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A server whose Triton-mode trace file is chosen at startup, the only way to choose it."""
    repo = tmp_path_factory.mktemp("trace_file_repo")
    small_models.write_add_sub(repo)
    trace_file = tmp_path_factory.mktemp("traces") / "trace.jsonl"
    log = tmp_path_factory.mktemp("logs") / "trace_file_server.log"
    with running_server(repo, log, ("--trace-config", f"triton,file={trace_file}"), grpc=True) as proc:
        yield proc, trace_file


def test_triton_mode_writes_timestamps_to_the_trace_file(file_server: tuple[ServerProcess, Path]) -> None:
    server, trace_file = file_server
    with httpclient.InferenceServerClient(server.url) as client:
        sampled = {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}
        client.update_trace_settings(model_name="add_sub", settings=sampled)
        try:
            data = np.ones((1, 16), np.float32)
            inputs = [httpclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(data)
            for i in range(3):
                client.infer("add_sub", inputs, request_id=f"file-{i}", headers={"traceparent": TRACEPARENT})
        finally:
            client.update_trace_settings(model_name="add_sub", settings=dict.fromkeys(sampled))
    traces = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert [t["request_id"] for t in traces] == ["file-0", "file-1", "file-2"]
    for trace in traces:
        assert trace["model_name"] == "add_sub" and trace["model_version"] == "1"
        assert trace["traceparent"] == TRACEPARENT
        names = [t["name"] for t in trace["timestamps"]]
        assert names == ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                         "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]
        stamps = [t["ns"] for t in trace["timestamps"]]
        assert stamps == sorted(stamps)


@pytest.mark.parametrize("model", ["", "add_sub"])
@pytest.mark.parametrize("value", ["elsewhere.jsonl", None])
def test_no_client_chooses_the_trace_file(
    file_server: tuple[ServerProcess, Path], tmp_path: Path, model: str, value: str | None
) -> None:
    """Over HTTP and gRPC, as Triton since its fix: the file is the startup one, whatever is sent."""
    server, trace_file = file_server
    target = str(tmp_path / value) if value else None
    message = "trace file location can not be updated through network protocol"
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as raw:
        path = f"/v2/models/{model}/trace/setting" if model else "/v2/trace/setting"
        answer = raw.post(path, json={"trace_file": target, "trace_level": ["TIMESTAMPS"]})
    assert (answer.status_code, answer.json()) == (501, {"error": message})
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException) as caught:
            client.update_trace_settings(model_name=model or None, settings={"trace_file": target})
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED" and message in caught.value.message()
        setting = client.get_trace_settings(model_name=model or None, as_json=True)["settings"]
    assert setting["trace_file"]["value"] == [str(trace_file)]
    assert setting["trace_level"]["value"] == ["OFF"]  # nothing of a refused update applies
    assert not (tmp_path / "elsewhere.jsonl").exists()


# --- pure pieces ------------------------------------------------------------------------------------------


def test_trace_config_flags_parse_like_tritons() -> None:
    config = parse_trace_config([
        "level=TIMESTAMPS", "level=TENSORS", "rate=10", "count=5", "mode=opentelemetry",
        "triton,file=/tmp/t.json", "triton,log-frequency=50", "opentelemetry,url=collector:4318/v1/traces",
        "opentelemetry,resource=service.name=mp", "opentelemetry,bsp_max_queue_size=64",
    ])
    assert config.level == ("TIMESTAMPS", "TENSORS")
    assert (config.rate, config.count, config.mode, config.file, config.log_frequency) == (
        10, 5, "opentelemetry", "/tmp/t.json", 50
    )
    assert config.otel_url == "collector:4318/v1/traces"
    assert config.otel_resource == (("service.name", "mp"),)
    assert config.otel_bsp == (("max_queue_size", 64),)
    assert parse_trace_config(["level=TIMESTAMPS", "level=OFF"]).level == ("OFF",)
    for bad in ("level=LOUD", "rate=x", "count=-3", "zipkin,url=x", "speed=1", "novalue"):
        with pytest.raises(ValueError):
            parse_trace_config([bad])


def test_grpc_metadata_traceparent() -> None:
    assert traceparent_from_metadata([("user-agent", "x"), ("traceparent", TRACEPARENT)]) == TRACEPARENT
    assert traceparent_from_metadata([("traceparent", TRACEPARENT.encode())]) == TRACEPARENT
    assert traceparent_from_metadata(None) is None
    assert traceparent_from_metadata([("other", "1")]) is None


def test_trace_settings_accept_grpc_style_lists() -> None:
    settings = TraceSettings(TraceSetting())
    settings.update("", {"trace_rate": ["5"], "trace_level": ["TIMESTAMPS"]})
    assert settings.get("m").rate == 5 and settings.get("m").enabled
    with pytest.raises(InvalidInput):
        settings.update("", {"log_frequency": ["1", "2"]})


def test_start_fails_early_when_otel_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    tracing = Tracing(TraceConfig(level=("TIMESTAMPS",), mode="opentelemetry"))
    with pytest.raises(Exception, match=r"modelport\[tracing\]"):
        tracing.start()
