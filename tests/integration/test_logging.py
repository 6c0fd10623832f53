"""Logging: request ids on request lines, --log-format json / ISO8601 / default, --log-file, and the
logging extension (GET/POST /v2/logging) changing levels and format at run time.

The first tests drive a real server whose logs go to a file; the last ones check LogController and
the formatters in process (the switches Triton keeps independent, generated ids, exceptions).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from modelport.config.settings import ServerSettings
from modelport.errors import InvalidInput
from modelport.observability.logging import (
    JsonFormatter,
    LogController,
    LogState,
    TritonStyleFormatter,
    bind_request_id,
    configure_logging,
    current_request_id,
)
from support.models import small_models
from support.server import ServerProcess, running_server

REQUEST_LINE = "inference request for model 'add_sub'"
TRITON_LINE = re.compile(r"^[VIWE]\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+\] ")
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [VIWE] \d+ [\w.]+\] ")


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    repo = tmp_path_factory.mktemp("logging_repo")
    small_models.write_add_sub(repo)
    log_file = tmp_path_factory.mktemp("logfile") / "modelport.log"
    args = ["--log-format=json", "--log-verbose=1", f"--log-file={log_file}"]
    with running_server(repo, tmp_path_factory.mktemp("logs") / "logging_server.log", args) as proc:
        yield proc, log_file


def infer(server: ServerProcess, request_id: str = "") -> None:
    data = np.ones((1, 16), np.float32)
    inputs = [httpclient.InferInput(name, [1, 16], "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    with httpclient.InferenceServerClient(server.url) as client:
        client.infer("add_sub", inputs, request_id=request_id)


def new_lines(log_file: Path, offset: int, wanted: int = 1, timeout_s: float = 5.0) -> tuple[list[str], int]:
    """Lines appended after `offset` (waits until `wanted` request lines are there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = log_file.read_text(encoding="utf-8")[offset:]
        lines = text.splitlines()
        if sum(REQUEST_LINE in line for line in lines) >= wanted or time.monotonic() > deadline:
            return lines, offset + len(text)
        time.sleep(0.02)


def post_logging(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as raw:
        return raw.post("/v2/logging", json=body)


def test_json_lines_carry_the_client_id_or_a_generated_one(logged_server: tuple[ServerProcess, Path]) -> None:
    server, log_file = logged_server
    offset = len(log_file.read_text(encoding="utf-8"))
    infer(server, "client-42")
    infer(server)
    infer(server)
    lines, _ = new_lines(log_file, offset, wanted=3)
    records = [json.loads(line) for line in lines]
    requests = [r for r in records if REQUEST_LINE in r["message"]]
    assert len(requests) == 3
    assert requests[0]["request_id"] == "client-42"
    generated = [r["request_id"] for r in requests[1:]]
    assert all(re.fullmatch(r"[0-9a-f]{16}", g) for g in generated)
    assert generated[0] != generated[1]
    for record in records:
        assert {"time", "level", "pid", "logger", "message"} <= set(record)
        assert record["time"].endswith("Z")
    batcher = [r for r in records if r["logger"] == "modelport.scheduling.dynamic_batcher"]
    assert batcher and all("request_id" not in r for r in batcher)  # batch lines are not one request's
    startup = log_file.read_text(encoding="utf-8").splitlines()[:3]
    assert all("request_id" not in json.loads(line) for line in startup)


def test_get_logging_reports_the_startup_flags(logged_server: tuple[ServerProcess, Path]) -> None:
    server, log_file = logged_server
    with httpclient.InferenceServerClient(server.url) as client:
        settings = client.get_log_settings()
        extensions = client.get_server_metadata()["extensions"]
    assert settings == {
        "log_file": str(log_file), "log_info": True, "log_warning": True, "log_error": True,
        "log_verbose_level": 1, "log_format": "json",
    }
    assert "logging" in extensions


def test_post_logging_changes_verbosity_and_format_at_run_time(
    logged_server: tuple[ServerProcess, Path],
) -> None:
    server, log_file = logged_server
    try:
        quiet = post_logging(server, {"log_verbose_level": 0})
        assert quiet.status_code == 200 and quiet.json()["log_verbose_level"] == 0
        offset = len(log_file.read_text(encoding="utf-8"))
        infer(server, "quiet")
        lines, offset = new_lines(log_file, offset, wanted=1, timeout_s=0.5)
        assert not [line for line in lines if "quiet" in line]

        switched = post_logging(server, {"log_verbose_level": 1, "log_format": "ISO8601"})
        assert switched.json()["log_format"] == "ISO8601"
        infer(server, "iso-1")
        lines, offset = new_lines(log_file, offset)
        request = [line for line in lines if REQUEST_LINE in line]
        assert len(request) == 1 and ISO_LINE.match(request[0]), request
        assert "[request id: iso-1]" in request[0]

        post_logging(server, {"log_format": "default"})
        infer(server, "triton-1")
        lines, offset = new_lines(log_file, offset)
        request = [line for line in lines if REQUEST_LINE in line]
        assert len(request) == 1 and TRITON_LINE.match(request[0]), request
        assert request[0].startswith("V") and "[request id: triton-1]" in request[0]
    finally:
        post_logging(server, {"log_verbose_level": 1, "log_format": "json"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"log_info": "yes"}, "expected a boolean for 'log_info'"),
        ({"log_verbose_level": -1}, "log_verbose_level"),
        ({"log_verbose_level": True}, "log_verbose_level"),
        ({"log_format": "xml"}, "invalid 'log_format'"),
        ({"log_file": "/tmp/elsewhere.log"}, "log_file"),
    ],
)
def test_bad_logging_settings_are_refused(
    logged_server: tuple[ServerProcess, Path], body: dict[str, Any], message: str
) -> None:
    server, _ = logged_server
    response = post_logging(server, body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    with httpclient.InferenceServerClient(server.url) as client:
        assert client.get_log_settings()["log_format"] == "json"  # nothing half-applied


# --- in process -------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[LogController, list[logging.LogRecord]]]:
    """A LogController on a private logger, with a handler that keeps what passes the switches."""
    records: list[logging.LogRecord] = []
    controller = LogController(LogState(), logger_name="modelport_test_logging")
    controller.apply()
    handler = logging.getLogger("modelport_test_logging").handlers[0]
    handler.emit = records.append  # type: ignore[method-assign]
    yield controller, records
    controller.close()


def emit_all(name: str = "modelport_test_logging") -> None:
    logger = logging.getLogger(name)
    logger.debug("d")
    logger.info("i")
    logger.warning("w")
    logger.error("e")


def test_info_warning_error_switch_independently(
    captured: tuple[LogController, list[logging.LogRecord]],
) -> None:
    controller, records = captured
    controller.update({"log_info": False, "log_warning": True, "log_error": False})
    emit_all()
    assert [r.getMessage() for r in records] == ["w"]
    records.clear()
    controller.update({"log_verbose_level": 2, "log_info": True, "log_error": True})
    emit_all()
    assert [r.getMessage() for r in records] == ["d", "i", "w", "e"]
    records.clear()
    controller.update({"log_verbose_level": 0, "log_info": False, "log_warning": False, "log_error": False})
    emit_all()
    assert records == []
    assert not logging.getLogger("modelport_test_logging").isEnabledFor(logging.ERROR)  # free when all off


def test_update_is_all_or_nothing(captured: tuple[LogController, list[logging.LogRecord]]) -> None:
    controller, _ = captured
    with pytest.raises(InvalidInput):
        controller.update({"log_info": False, "log_format": "bogus"})
    assert controller.settings()["log_info"] is True


async def test_generated_ids_are_stable_within_a_request_and_distinct_across() -> None:
    async def request(client_id: str) -> tuple[str | None, str | None]:
        bind_request_id(client_id)
        return current_request_id(), current_request_id()

    (a1, a2), (b1, b2), (c1, _) = await asyncio.gather(request(""), request(""), request("mine"))
    assert a1 == a2 and b1 == b2 and a1 != b1
    assert c1 == "mine"
    assert current_request_id() is None  # outside any request


def test_formatters_include_request_id_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("modelport.x", logging.ERROR, __file__, 1, "failed %s", ("here",), info)
    record.request_id = "r-1"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "failed here" and doc["request_id"] == "r-1" and doc["level"] == "ERROR"
    assert "ValueError: boom" in doc["exception"]
    line = TritonStyleFormatter().format(record)
    assert TRITON_LINE.match(line) and line.startswith("E")
    assert "modelport.x] [request id: r-1] failed here" in line and "ValueError: boom" in line


def test_log_file_flag_appends_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "server.log"
    controller = configure_logging(ServerSettings(log_file=str(path), log_format="ISO8601"))
    try:
        logging.getLogger("modelport.test").warning("to the file")
    finally:
        controller.close()
    line = path.read_text(encoding="utf-8").strip()
    assert ISO_LINE.match(line) and line.endswith("modelport.test] to the file")
