"""Request bodies are read as strictly as Triton reads them: JSON tensor values must be of their
datatype's JSON kind and within its range, and a compressed body must be complete."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from support.models import identity_model_name, write_identity
from support.server import ServerProcess, running_server

DATATYPES = ("FP32", "FP64", "INT8", "UINT8", "BOOL")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("strict_repo")
    for datatype in DATATYPES:
        write_identity(repo, datatype)
    with running_server(repo, tmp_path_factory.mktemp("logs") / "strict_server.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def raw(strict_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=strict_server.base_url, trust_env=False, timeout=30) as client:
        yield client


def _body(datatype: str, data: Any, shape: list[int] | None = None) -> dict[str, Any]:
    count = shape[-1] if shape else len(data)
    return {"inputs": [{"name": "INPUT0", "datatype": datatype, "shape": shape or [1, count], "data": data}]}


def _infer(raw: httpx.Client, datatype: str, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw.post(f"/v2/models/{identity_model_name(datatype)}/infer", content=content, headers=headers)


# --- JSON values: the datatype's JSON kind ------------------------------------------------------
@pytest.mark.parametrize(
    ("datatype", "data", "reason"),
    [
        ("FP32", ["1.5", 2.0], "attempt to access JSON non-number as double"),
        ("FP64", [1.0, None], "attempt to access JSON non-number as double"),
        ("FP32", [1.0, True], "attempt to access JSON non-number as double"),
        ("INT8", [1, 2.5], "attempt to access JSON non-signed-integer as signed-integer"),
        ("INT8", ["3", 1], "attempt to access JSON non-signed-integer as signed-integer"),
        ("UINT8", [1, False], "attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("BOOL", [True, 1], "attempt to access JSON non-boolean as boolean"),
        ("BOOL", ["true", False], "attempt to access JSON non-boolean as boolean"),
    ],
)
def test_values_of_another_json_kind_are_refused_with_tritons_reason(
    raw: httpx.Client, datatype: str, data: list[Any], reason: str
) -> None:
    response = _infer(raw, datatype, _body(datatype, data))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(f"Unable to parse 'data' of input 'INPUT0' as {datatype}")
    assert error.endswith(reason)


def test_nested_and_unevenly_nested_numbers_are_read_in_row_major_order(raw: httpx.Client) -> None:
    for data in ([[1.5, 2], [3, 4.25]], [1.5, [2, [3]], 4.25]):
        response = _infer(raw, "FP32", _body("FP32", data, shape=[1, 4]))
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [1.5, 2.0, 3.0, 4.25]


# --- JSON values: the datatype's range --------------------------------------------------------
@pytest.mark.parametrize(
    ("datatype", "value"), [("FP32", 1e308), ("FP32", -1e39), ("INT8", 300), ("UINT8", -1)]
)
def test_values_out_of_the_datatypes_range_are_refused(
    raw: httpx.Client, datatype: str, value: float
) -> None:
    response = _infer(raw, datatype, _body(datatype, [value, 1]))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"Unable to parse 'data' of input 'INPUT0' as {datatype}: ")


def test_the_largest_fp32_comes_back_as_a_json_number(raw: httpx.Client) -> None:
    biggest = float(np.finfo(np.float32).max)
    response = _infer(raw, "FP32", _body("FP32", [biggest, -biggest]))
    assert response.status_code == 200, response.text
    data = json.loads(response.content, parse_constant=pytest.fail)["outputs"][0]["data"]  # no Infinity
    assert np.array(data, np.float32).tolist() == [biggest, -biggest]


# --- compressed bodies ------------------------------------------------------------------------
COMPRESSORS = {"gzip": gzip.compress, "deflate": zlib.compress}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_body_must_be_whole(raw: httpx.Client, encoding: str) -> None:
    body = COMPRESSORS[encoding](json.dumps(_body("FP32", [1.0, 2.0])).encode())
    whole = _infer(raw, "FP32", body, **{"Content-Encoding": encoding})
    assert whole.status_code == 200, whole.text
    # Without its checksum the stream still inflates to the whole document: it must not be taken.
    cut = _infer(raw, "FP32", body[:-4], **{"Content-Encoding": encoding})
    assert cut.status_code == 400, cut.text
    assert (
        cut.json()["error"]
        == f"failed to decompress the {encoding} request body: the compressed data is truncated"
    )


def test_tritonclient_compressed_requests_still_work(strict_server: ServerProcess) -> None:
    data = np.array([[1.0, 2.0, 3.0]], np.float32)
    tensor = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    tensor.set_data_from_numpy(data, binary_data=True)
    with httpclient.InferenceServerClient(strict_server.url) as client:
        for algorithm in ("gzip", "deflate"):
            result = client.infer(
                identity_model_name("FP32"), [tensor], request_compression_algorithm=algorithm
            )
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
