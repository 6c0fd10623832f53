"""Triton's generate extension over HTTP: /generate (one JSON object) and /generate_stream (Server-Sent
Events), on a real server in one process and with frontend workers, driven by httpx.

The answers, statuses and messages were measured on tritonserver 2.51 with the same models; where
modelport differs on purpose (client mistakes are 400, not Triton's 500) the test says so.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.models import small_models, write_sleepy_model
from support.server import ServerProcess, running_server

TIMEOUT_S = 30.0
SSE = "text/event-stream; charset=utf-8"
NOT_ONE = (
    "generate expects model to produce exactly 1 response, use generate stream for model that generates "
    "various number of responses"
)

TEXT_UPPER = (
    """
    backend: "python"
    max_batch_size: 4
    input [ { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] } ]
    output [
      { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] },
      { name: "params" data_type: TYPE_STRING dims: [ 1 ] }
    ]
    """,
    """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                text = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
                upper = np.array([[v.upper() for v in row] for row in text], dtype=np.object_)
                params = np.array([[request.parameters().encode()]] * len(text), dtype=np.object_)
                outputs = [pb_utils.Tensor("text_output", upper), pb_utils.Tensor("params", params)]
                responses.append(pb_utils.InferenceResponse(outputs))
            return responses
    """,
)

# Decoupled: `count` responses (index, word), `delay` seconds apart; an INVALID_ARG error response in
# place of response `fail_at`. When it finds its request cancelled it writes where to the file the
# request parameter "marker" names, and stops.
TOKENS = (
    """
    backend: "python"
    max_batch_size: 0
    model_transaction_policy { decoupled: true }
    input [
      { name: "count" data_type: TYPE_INT32 dims: [ 1 ] },
      { name: "delay" data_type: TYPE_FP32 dims: [ 1 ] optional: true },
      { name: "fail_at" data_type: TYPE_INT32 dims: [ 1 ] optional: true }
    ]
    output [
      { name: "index" data_type: TYPE_INT32 dims: [ 1 ] },
      { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] }
    ]
    instance_group [ { count: 2 kind: KIND_CPU } ]
    """,
    """
    import json
    import time
    import numpy as np
    import triton_python_backend_utils as pb_utils

    def scalar(request, name, default):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy()[0]

    class TritonPythonModel:
        def execute(self, requests):
            for request in requests:
                count, delay = int(scalar(request, "count", 0)), float(scalar(request, "delay", 0.0))
                fail_at = int(scalar(request, "fail_at", -1))
                marker = json.loads(request.parameters()).get("marker")
                sender = request.get_response_sender()
                for index in range(count):
                    if sender.is_cancelled():
                        if marker:
                            with open(marker, "w") as f:
                                f.write(f"cancelled at {index}")
                        break
                    if index == fail_at:
                        error = pb_utils.TritonError(f"failed at {index}", pb_utils.TritonError.INVALID_ARG)
                        sender.send(pb_utils.InferenceResponse(error=error))
                        continue
                    words = np.array([f"w{index}".encode()], dtype=np.object_)
                    outputs = [
                        pb_utils.Tensor("index", np.array([index], np.int32)),
                        pb_utils.Tensor("text_output", words),
                    ]
                    sender.send(pb_utils.InferenceResponse(outputs))
                    time.sleep(delay)
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    """,
)


def _write_python_model(repo: Path, name: str, model: tuple[str, str]) -> None:
    config, code = model
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n' + textwrap.dedent(config))
    (repo / name / "1" / "model.py").write_text(textwrap.dedent(code).lstrip())


@pytest.fixture(scope="module", params=["one process", "frontend workers"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("generate_repo")
    small_models.write_add_sub(repo)
    small_models.write_string_identity(repo)
    write_sleepy_model(repo, instances=1)
    _write_python_model(repo, "text_upper", TEXT_UPPER)
    _write_python_model(repo, "tokens", TOKENS)
    args = ["--frontend-workers=2"] if request.param == "frontend workers" else ["--frontend-workers=0"]
    log = tmp_path_factory.mktemp("logs") / "generate.log"
    with running_server(repo, log, args) as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=TIMEOUT_S) as client:
        yield client


def _post(http: httpx.Client, path: str, doc: Any, **kwargs: Any) -> httpx.Response:
    return http.post(path, content=json.dumps(doc).encode(), **kwargs)


def _events(body: bytes) -> list[dict[str, Any]]:
    """The events of a whole SSE body, which must be nothing but `data: {json}` events."""
    assert body.endswith(b"\n\n") or body == b"", body
    chunks = body.split(b"\n\n")[:-1]
    assert all(chunk.startswith(b"data: ") and b"\n" not in chunk for chunk in chunks), body
    return [json.loads(chunk[len(b"data: ") :]) for chunk in chunks]


def _add_sub_doc(**extra: Any) -> dict[str, Any]:
    return {"INPUT0": list(range(16)), "INPUT1": [1] * 16, **extra}


# --- /generate --------------------------------------------------------------------------------------
def test_generate_on_an_onnx_model_maps_keys_to_inputs_and_outputs_to_keys(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/add_sub/generate", _add_sub_doc(id="42", parameters={"temperature": 0}))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "OUTPUT0": [float(i + 1) for i in range(16)],
        "OUTPUT1": [float(i - 1) for i in range(16)],
        "id": "42",
        "model_name": "add_sub",
        "model_version": "1",
    }
    assert list(answer.json()) == sorted(answer.json())  # Triton writes the keys sorted
    versioned = _post(http, "/v2/models/add_sub/versions/1/generate", _add_sub_doc())
    assert versioned.status_code == 200 and "id" not in versioned.json()


def test_twice_the_elements_make_a_batch_of_two(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/add_sub/generate", {"INPUT0": [1] * 32, "INPUT1": [2] * 32})
    assert answer.status_code == 200, answer.text
    assert answer.json()["OUTPUT0"] == [3.0] * 32


def test_strings_on_bytes_models(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/string_identity/generate", {"INPUT0": "héllo wörld"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"OUTPUT0": "héllo wörld", "model_name": "string_identity", "model_version": "1"}
    two = _post(http, "/v2/models/text_upper/generate", {"text_input": ["a", "b"]}).json()
    assert two["text_output"] == ["A", "B"]


def test_other_keys_and_parameters_reach_the_model_as_request_parameters(http: httpx.Client) -> None:
    parameters = {"max_tokens": 5, "temperature": 0.5, "stop": "x"}
    doc = {"text_input": "hi", "stream": False, "parameters": parameters}
    answer = _post(http, "/v2/models/text_upper/generate", doc)
    assert answer.status_code == 200, answer.text
    assert answer.json()["text_output"] == "HI"
    assert json.loads(answer.json()["params"]) == {"stream": False, **parameters}


@pytest.mark.parametrize(
    ("path", "doc", "status", "message"),
    [
        ("/v2/models/nope/generate", {}, 404, "Request for unknown model: 'nope' is not found"),
        ("/v2/models/nope/generate_stream", {}, 404, "Request for unknown model: 'nope' is not found"),
        (
            "/v2/models/add_sub/versions/7/generate",
            {},
            404,
            "Request for unknown model: 'add_sub' version 7 is not found",
        ),
        (  # a key that names no input is a parameter, and arrays are no parameters
            "/v2/models/add_sub/generate",
            _add_sub_doc(INPUT9=[1.0]),
            400,
            "parameter 'INPUT9' has invalid type. It should be either 'int', 'bool', or 'string'.",
        ),
        (  # Triton: 500
            "/v2/models/add_sub/generate",
            _add_sub_doc(INPUT0=["a"] * 16),
            400,
            "Unable to parse 'data': attempt to access JSON non-number as double",
        ),
        (
            "/v2/models/add_sub/generate",
            _add_sub_doc(INPUT0=[1, 2, 3]),
            400,
            "The schema can not convert input 'INPUT0' to tensor with proper shape",
        ),
        (
            "/v2/models/add_sub/generate_stream",
            {"INPUT0": [1] * 16},
            400,
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'add_sub'. Got input(s) "
            "['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s).",
        ),
        (  # Triton: 500
            "/v2/models/string_identity/generate",
            {"INPUT0": 5},
            400,
            "Unable to parse JSON bytes array: attempt to access JSON non-string as string",
        ),
        (  # Triton: 500
            "/v2/models/add_sub/generate",
            _add_sub_doc(id=5),
            400,
            "Unable to parse 'id': attempt to access JSON non-string as string",
        ),
    ],
)
def test_client_mistakes_are_json_errors_with_tritons_messages(
    http: httpx.Client, path: str, doc: Any, status: int, message: str
) -> None:
    answer = _post(http, path, doc)
    assert (answer.status_code, answer.json()) == (status, {"error": message})
    assert answer.headers["content-type"] == "application/json"


def test_a_body_that_is_no_json_object_and_compressed_bodies(http: httpx.Client) -> None:
    answer = http.post("/v2/models/add_sub/generate", content=b'{"INPUT0": [1,')
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("failed to parse the request JSON buffer: ")
    gzipped = _post(http, "/v2/models/add_sub/generate", _add_sub_doc(), headers={"content-encoding": "gzip"})
    assert (gzipped.status_code, gzipped.json()) == (
        400, {"error": "Unsupported content-encoding, only 'identity' is supported."}
    )  # fmt: skip
    for method in ("GET", "PUT"):
        other = http.request(method, "/v2/models/add_sub/generate_stream")
        assert (other.status_code, other.json()) == (405, {"error": "Method Not Allowed"})


def test_generate_on_a_decoupled_model_needs_exactly_one_response(http: httpx.Client) -> None:
    one = _post(http, "/v2/models/tokens/generate", {"count": 1})
    assert one.status_code == 200, one.text
    assert one.json() == {"index": 0, "model_name": "tokens", "model_version": "1", "text_output": "w0"}
    failed = _post(http, "/v2/models/tokens/generate", {"count": 1, "fail_at": 0})
    assert (failed.status_code, failed.json()) == (400, {"error": "failed at 0"})
    for count in (0, 3):  # Triton answers these with status 200 and the error object
        answer = _post(http, "/v2/models/tokens/generate", {"count": count})
        assert (answer.status_code, answer.json()) == (400, {"error": NOT_ONE})


# --- /generate_stream -------------------------------------------------------------------------------
def test_a_decoupled_model_streams_one_event_per_response_in_order(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/tokens/generate_stream", {"count": 4, "id": "s1"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == SSE
    assert _events(answer.content) == [
        {"id": "s1", "index": i, "model_name": "tokens", "model_version": "1", "text_output": f"w{i}"}
        for i in range(4)
    ]
    empty = _post(http, "/v2/models/tokens/generate_stream", {"count": 0})
    assert (empty.status_code, empty.headers["content-type"], empty.content) == (200, SSE, b"")


def test_events_leave_as_the_model_sends_them(http: httpx.Client) -> None:
    arrivals = []
    started = time.monotonic()
    with http.stream("POST", "/v2/models/tokens/generate_stream", json={"count": 3, "delay": 0.4}) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] > 0.5, arrivals  # 0.8 s apart when sent; together when buffered


def test_an_error_in_the_middle_of_a_stream_is_an_event(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/tokens/generate_stream", {"count": 4, "fail_at": 1})
    assert answer.status_code == 200
    events = _events(answer.content)
    assert [e.get("index", e.get("error")) for e in events] == [0, "failed at 1", 2, 3]
    assert events[1] == {"error": "failed at 1"}


def test_a_stream_whose_first_response_fails_takes_its_status(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/tokens/generate_stream", {"count": 2, "fail_at": 0})
    assert (answer.status_code, answer.headers["content-type"]) == (400, SSE)
    assert [e.get("index", e.get("error")) for e in _events(answer.content)] == ["failed at 0", 1]


def test_a_model_that_is_not_decoupled_answers_one_event(http: httpx.Client) -> None:
    answer = _post(http, "/v2/models/add_sub/generate_stream", _add_sub_doc())
    assert (answer.status_code, answer.headers["content-type"]) == (200, SSE)
    [event] = _events(answer.content)
    assert event["OUTPUT0"][:3] == [1.0, 2.0, 3.0] and event["model_name"] == "add_sub"


# --- a client that goes away ------------------------------------------------------------------------
def _errors_logged(server: ServerProcess, since: int) -> list[str]:
    lines = server.log()[since:].splitlines()
    return [line for line in lines if re.match(r"E\d{4} ", line) or "Traceback" in line]


def _wait_for(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout_s}s")


@pytest.mark.parametrize("route", ["generate_stream", "generate"])
def test_a_client_that_goes_away_cancels_its_request(
    server: ServerProcess, http: httpx.Client, tmp_path: Path, route: str
) -> None:
    marker = tmp_path / "cancelled"
    log_start = len(server.log())
    doc = {"count": 400, "delay": 0.025, "parameters": {"marker": str(marker)}}
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=TIMEOUT_S) as own:
        if route == "generate_stream":
            with own.stream("POST", "/v2/models/tokens/generate_stream", json=doc) as answer:
                lines = answer.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
        else:
            with pytest.raises(httpx.ReadTimeout):
                own.post("/v2/models/tokens/generate", json=doc, timeout=0.5)
    # The client's connection is closed: the model sees the request cancelled within a few responses.
    written = _wait_for(marker)
    assert re.fullmatch(r"cancelled at \d+", written) and int(written.split()[-1]) < 200, written
    assert http.get("/v2/health/ready").status_code == 200
    again = _post(http, "/v2/models/tokens/generate_stream", {"count": 2})
    assert [e["index"] for e in _events(again.content)] == [0, 1]
    assert _errors_logged(server, log_start) == []


def test_a_queued_request_whose_client_goes_away_never_runs(
    server: ServerProcess, http: httpx.Client
) -> None:
    def executions() -> int:
        stats = http.get("/v2/models/sleepy/stats").json()["model_stats"][0]
        return int(stats.get("execution_count", 0))

    before = executions()
    first: list[httpx.Response] = []
    running = threading.Thread(
        target=lambda: first.append(_post(http, "/v2/models/sleepy/generate", {"IN": 1.0})), daemon=True
    )
    running.start()
    time.sleep(0.3)  # the first request holds the model's one instance
    with httpx.Client(base_url=server.base_url, trust_env=False) as own, pytest.raises(httpx.ReadTimeout):
        own.post("/v2/models/sleepy/generate", json={"IN": 0.0}, timeout=0.3)
    running.join(TIMEOUT_S)
    assert first and first[0].json()["OUT"] == 1.0
    time.sleep(0.3)
    assert executions() == before + 1
