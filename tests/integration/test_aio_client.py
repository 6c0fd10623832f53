"""The same server through tritonclient.http.aio (aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from support.server import ServerProcess


@pytest.fixture
async def aio(server: ServerProcess) -> AsyncIterator[aioclient.InferenceServerClient]:
    async with aioclient.InferenceServerClient(server.url, conn_timeout=30.0) as client:
        yield client


def _inputs(a: np.ndarray, b: np.ndarray, binary: bool = True) -> list[aioclient.InferInput]:
    inputs = [
        aioclient.InferInput("INPUT0", list(a.shape), "FP32"),
        aioclient.InferInput("INPUT1", list(b.shape), "FP32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs


async def test_health(aio: aioclient.InferenceServerClient) -> None:
    assert await aio.is_server_live() is True
    assert await aio.is_server_ready() is False  # two broken models
    assert await aio.is_model_ready("add_sub") is True
    assert await aio.is_model_ready("broken_onnx") is False


async def test_metadata_and_config(aio: aioclient.InferenceServerClient) -> None:
    metadata = await aio.get_model_metadata("add_versions")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"][0]["shape"] == [-1, 4]
    config = await aio.get_model_config("simple_noconfig")
    assert config["max_batch_size"] == 4
    assert config["instance_group"][0]["count"] == 2
    assert "classification" in (await aio.get_server_metadata())["extensions"]


@pytest.mark.parametrize("binary", [True, False])
async def test_infer(aio: aioclient.InferenceServerClient, binary: bool) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.float32)
    outputs = [aioclient.InferRequestedOutput("OUTPUT0", binary_data=binary)]
    result = await aio.infer("add_sub", _inputs(a, b, binary), outputs=outputs, request_id="aio-1")
    assert result.get_response()["id"] == "aio-1"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert result.as_numpy("OUTPUT1") is None


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
async def test_compression(aio: aioclient.InferenceServerClient, algorithm: str) -> None:
    a = np.full((1, 16), 2.0, dtype=np.float32)
    result = await aio.infer(
        "add_sub",
        _inputs(a, a),
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a * 0)


async def test_classification(aio: aioclient.InferenceServerClient) -> None:
    x = aioclient.InferInput("INPUT0", [1, 10], "FP32")
    x.set_data_from_numpy(np.arange(10, dtype=np.float32).reshape(1, 10))
    out = aioclient.InferRequestedOutput("RAW", class_count=2)
    result = await aio.infer("classifier", [x], outputs=[out])
    assert result.as_numpy("RAW").tolist() == [[b"9.000000:9", b"8.000000:8"]]


async def test_errors(aio: aioclient.InferenceServerClient) -> None:
    a = np.ones((1, 16), dtype=np.float32)
    with pytest.raises(InferenceServerException) as info:
        await aio.infer("nosuch", _inputs(a, a))
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        await aio.infer("add_sub", _inputs(a, np.ones((1, 8), dtype=np.float32)))
    assert info.value.status() == "400"
    assert "unexpected shape for input 'INPUT1'" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        await aio.load_model("add_sub")
    assert info.value.status() == "503"


async def test_concurrent_requests_get_their_own_results(aio: aioclient.InferenceServerClient) -> None:
    async def one(i: int) -> None:
        a = np.full((1 + i % 4, 16), float(i), dtype=np.float32)
        result = await aio.infer("add_sub", _inputs(a, a), request_id=str(i))
        assert result.get_response()["id"] == str(i)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(32))), timeout=60)
