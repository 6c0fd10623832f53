"""The built-in status page: its JSON endpoint through httpx, the page itself in a real headless browser.

The repository has a model that serves, one with two versions (so a traffic split shows), and one
whose config does not parse (UNAVAILABLE with its reason). Traffic goes through tritonclient.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from support.browser import chromium, dump_dom
from support.models import small_models, write_broken_config
from support.server import HOST, ServerProcess, free_port, running_server

STATS_KEY = {"stats-key": "s3e"}
ADMIN_KEY = {"admin-key": "adm"}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("status_repo")
    small_models.write_add_sub(repo)
    small_models.write_add_versions(repo)
    write_broken_config(repo)
    return repo


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "status_server.log"
    # Metrics on: the latency histograms they keep give the page its percentiles.
    metrics = ["--allow-metrics=true", f"--metrics-port={free_port()}", f"--metrics-address={HOST}"]
    with running_server(repository, log, ["--exit-on-error=false", *metrics]) as proc:
        yield proc


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30.0) as c:
        yield c


def send_add_sub(url: str, count: int, batch: int = 1) -> None:
    with httpclient.InferenceServerClient(url) as client:
        for _ in range(count):
            inputs = []
            for name in ("INPUT0", "INPUT1"):
                tensor = httpclient.InferInput(name, [batch, 16], "FP32")
                tensor.set_data_from_numpy(np.ones((batch, 16), np.float32))
                inputs.append(tensor)
            client.infer("add_sub", inputs)


def model_doc(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["models"] if m["name"] == name)


class TestStatusJson:
    def test_every_model_with_its_versions_states_and_reasons(self, raw: httpx.Client) -> None:
        response = raw.get("/ui/status.json")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        doc = response.json()
        assert [m["name"] for m in doc["models"]] == ["add_sub", "add_versions", "broken_config"]
        assert model_doc(doc, "add_versions")["versions"] == [
            {"version": "1", "state": "READY", "reason": ""},
            {"version": "2", "state": "READY", "reason": ""},
        ]
        broken = model_doc(doc, "broken_config")
        assert broken["versions"][0]["state"] == "UNAVAILABLE"
        assert broken["versions"][0]["reason"]
        assert "served" not in broken and broken["traffic"] is None
        served = model_doc(doc, "add_sub")["served"][0]
        assert served["instances"] >= 1 and served["max_batch_size"] == 8
        assert doc["histograms"] is True
        assert len(served["request_latency"]) == len(doc["latency_bounds_ns"]) + 1

    def test_counters_follow_the_traffic(self, server: ServerProcess, raw: httpx.Client) -> None:
        before = model_doc(raw.get("/ui/status.json").json(), "add_sub")["served"][0]
        send_add_sub(server.url, 5, batch=2)
        after_doc = raw.get("/ui/status.json").json()
        after = model_doc(after_doc, "add_sub")["served"][0]
        assert after["success"] - before["success"] == 5
        assert after["inference_count"] - before["inference_count"] == 10
        assert sum(after["request_latency"]) - sum(before["request_latency"]) == 5
        assert after["batches"]["2"] - before["batches"].get("2", 0) == 5
        assert after["compute_ns"] > before["compute_ns"]
        assert after_doc["time_ns"] > 0 and after["pending"] == 0

    def test_traffic_policy_shows(self, raw: httpx.Client) -> None:
        assert model_doc(raw.get("/ui/status.json").json(), "add_versions")["traffic"]["source"] == "default"
        set_split = raw.post("/v2/models/add_versions/traffic", json={"weights": {"1": 90, "2": 10}})
        assert set_split.status_code == 200
        try:
            traffic = model_doc(raw.get("/ui/status.json").json(), "add_versions")["traffic"]
            assert traffic == {"weights": {"1": 90, "2": 10}, "pin": None, "source": "api"}
        finally:
            raw.post("/v2/models/add_versions/traffic", json={"weights": None})

    def test_read_only(self, raw: httpx.Client) -> None:
        for path in ("/ui/status.json", "/ui", "/"):
            assert raw.post(path, json={}).status_code == 405


class TestPageFiles:
    def test_page_at_root_and_ui_with_relative_urls_only(self, raw: httpx.Client) -> None:
        for path in ("/", "/ui"):
            response = raw.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            refs = re.findall(r'(?:src|href)="([^"]+)"', response.text)
            assert refs == ["ui/status.css", "ui/status.js"]
        script = raw.get("/ui/status.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert raw.get("/ui/status.css").headers["content-type"].startswith("text/css")
        # Nothing is fetched from elsewhere: no absolute URL but the SVG namespace, no root-relative path.
        urls = set(re.findall(r"https?://[^\s\"'`]+", script.text + raw.get("/ui/status.css").text))
        assert urls == {"http://www.w3.org/2000/svg"}
        assert 'fetch("ui/status.json"' in script.text and not re.search(r"""fetch\(["'`]/""", script.text)

    def test_trailing_slash_redirects_relative_so_a_path_prefix_survives(self, raw: httpx.Client) -> None:
        response = raw.get("/ui/", follow_redirects=False)
        assert response.status_code == 308 and response.headers["location"] == "../ui"
        # Behind an Ingress that strips /models, the browser resolves it against /models/ui/.
        assert str(httpx.URL("http://host/models/ui/").join(response.headers["location"])) == "http://host/models/ui"


# ------------------------------------------------------------------ the page in a real browser
class _Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_attr(self, name: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.found if name in attrs]


needs_browser = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (make test-tools)")


@needs_browser
def test_browser_shows_every_model_and_the_charts_follow_traffic(server: ServerProcess) -> None:
    idle = _Elements(dump_dom(server.base_url + "/ui"))
    body = idle.found[[tag for tag, _ in idle.found].index("body")][1]
    assert body["data-status"] == "ok" and int(body["data-polls"]) >= 3
    sections = {s["data-model"]: s for s in idle.with_attr("data-model")}
    assert set(sections) == {"add_sub", "add_versions", "broken_config"}
    states = {(row["data-version"], row["data-state"]) for row in idle.with_attr("data-state")}
    assert states == {("1", "READY"), ("2", "READY"), ("1", "UNAVAILABLE")}
    assert float(sections["add_sub"]["data-max-rps"]) == 0.0

    stop = threading.Event()
    senders = [threading.Thread(target=_send_until, args=(server.url, stop)) for _ in range(3)]
    for sender in senders:
        sender.start()
    try:
        time.sleep(0.5)  # traffic is flowing before the page's first poll
        busy = _Elements(dump_dom(server.base_url + "/", budget_ms=16000))
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    add_sub = next(s for s in busy.with_attr("data-model") if s["data-model"] == "add_sub")
    assert int(add_sub["data-samples"]) >= 3
    assert int(add_sub["data-requests"]) > 0 and float(add_sub["data-max-rps"]) > 0
    assert float(add_sub["data-p99-ms"]) > 0
    batch = next(c for c in busy.with_attr("data-chart") if c["data-chart"] == "batch")
    assert int(batch["data-executions"]) > 0 and "1" in batch["data-sizes"].split(",")


def _send_until(url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        send_add_sub(url, 5)


# ------------------------------------------------------------------ restricted statistics
@pytest.fixture(scope="module")
def restricted(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "status_restricted.log"
    flags = [
        "--exit-on-error=false",
        "--http-restricted-api=statistics:stats-key=s3e",
        "--http-restricted-api=model-repository,model-config:admin-key=adm",
    ]
    with running_server(repository, log, flags) as proc:
        yield proc


def test_restricted_json_needs_every_header_it_shows(restricted: ServerProcess) -> None:
    with httpx.Client(base_url=restricted.base_url, trust_env=False, timeout=30.0) as client:
        assert client.get("/ui").status_code == 200  # the page holds no data: it asks for the key
        refused = client.get("/ui/status.json")
        assert refused.status_code == 403
        expected = "This API is restricted, expecting headers 'stats-key' and 'admin-key'"
        assert refused.json() == {"error": expected}
        assert client.get("/ui/status.json", headers=STATS_KEY).status_code == 403
        allowed = client.get("/ui/status.json", headers={**STATS_KEY, **ADMIN_KEY})
        assert allowed.status_code == 200 and len(allowed.json()["models"]) == 3
        # Without metrics no latency histograms are kept: the page shows the mean latency instead.
        assert allowed.json()["histograms"] is False
        assert model_doc(allowed.json(), "add_sub")["served"][0]["request_latency"] is None


@needs_browser
def test_browser_asks_for_the_key_when_statistics_are_restricted(restricted: ServerProcess) -> None:
    page = _Elements(dump_dom(restricted.base_url + "/ui", budget_ms=3000))
    body = next(attrs for tag, attrs in page.found if tag == "body")
    assert body["data-status"] == "key-needed"
    assert [i["data-header"] for i in page.with_attr("data-header")] == ["stats-key", "admin-key"]
    assert page.with_attr("data-model") == []
