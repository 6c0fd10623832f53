"""The repository index: one row per model version, broken models UNAVAILABLE with their reason."""

from __future__ import annotations

import httpx
import tritonclient.http as httpclient

from support.models import NUMERIC_TYPES, identity_model_name


def _by_name(index: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(row["name"], row.get("version", "")): row for row in index}


def test_index_lists_every_version(client: httpclient.InferenceServerClient) -> None:
    rows = _by_name(client.get_model_repository_index())
    ready = [
        "add_sub",
        "string_identity",
        "simple_noconfig",
        "classifier",
        "nobatch",
        "reshape",
        *(identity_model_name(d) for d in NUMERIC_TYPES),
    ]
    for name in ready:
        assert rows[(name, "1")] == {"name": name, "version": "1", "state": "READY"}
    assert rows[("add_versions", "1")]["state"] == "READY"
    assert rows[("add_versions", "2")]["state"] == "READY"
    assert len(rows) == len(ready) + 2 + 2


def test_index_is_sorted(client: httpclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    keys = [(row["name"], int(row["version"])) for row in index]
    assert keys == sorted(keys)


def test_broken_config_reason_names_the_file(client: httpclient.InferenceServerClient) -> None:
    row = _by_name(client.get_model_repository_index())[("broken_config", "1")]
    assert row["state"] == "UNAVAILABLE"
    assert "failed to parse model configuration" in row["reason"]
    assert "broken_config/config.pbtxt" in row["reason"]


def test_broken_onnx_reason(client: httpclient.InferenceServerClient) -> None:
    row = _by_name(client.get_model_repository_index())[("broken_onnx", "1")]
    assert row["state"] == "UNAVAILABLE"
    assert "failed to load ONNX model" in row["reason"]


def test_ready_filter(raw: httpx.Client) -> None:
    everything = raw.post("/v2/repository/index").json()
    only_ready = raw.post("/v2/repository/index", json={"ready": True}).json()
    assert {row["state"] for row in only_ready} == {"READY"}
    assert len(everything) - len(only_ready) == 2
    assert raw.post("/v2/repository/index", json={"ready": False}).json() == everything


def test_index_with_a_malformed_body(raw: httpx.Client) -> None:
    response = raw.post("/v2/repository/index", content=b"{nope")
    assert response.status_code in (400, 500)
    assert "error" in response.json()


def test_repository_name_in_the_path_is_not_a_route(raw: httpx.Client) -> None:
    # Triton answers `'repository_name' specification is not supported` (501); modelport has no such route.
    assert raw.post("/v2/repository/myrepo/index").status_code in (404, 501)
