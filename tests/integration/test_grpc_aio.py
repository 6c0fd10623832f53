"""The gRPC frontend through tritonclient.grpc.aio: metadata, config, inference, errors, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from integration.grpc_support import build_grpc_repository, running_grpc_server
from support.server import ServerProcess

RNG = np.random.default_rng(99)


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_grpc_repository(tmp_path_factory.mktemp("grpc_aio_repo"))
    log = tmp_path_factory.mktemp("grpc_aio_logs") / "server.log"
    with running_grpc_server(repo, log) as proc:
        yield proc


def fp32_inputs(**arrays: np.ndarray) -> list[Any]:
    inputs = []
    for name, data in arrays.items():
        inp = aioclient.InferInput(name, list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        inputs.append(inp)
    return inputs


async def test_health_and_metadata(grpc_server: ServerProcess) -> None:
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("add_sub")
        assert not await client.is_model_ready("no_such_model")
        meta = await client.get_server_metadata(as_json=True)
        assert "system_shared_memory" in meta["extensions"]
        model = await client.get_model_metadata("add_sub", as_json=True)
        assert model["name"] == "add_sub" and model["versions"] == ["1"]
        config = await client.get_model_config("add_sub")
        assert config.config.max_batch_size == 8


async def test_infer(grpc_server: ServerProcess) -> None:
    a = RNG.normal(size=(2, 16)).astype(np.float32)
    b = RNG.normal(size=(2, 16)).astype(np.float32)
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        result = await client.infer("add_sub", fp32_inputs(INPUT0=a, INPUT1=b), request_id="aio-1")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
    assert result.get_response().id == "aio-1"


async def test_bytes_and_classification(grpc_server: ServerProcess) -> None:
    data = np.array([[b"alpha"], [b"beta"]], dtype=object)
    text = aioclient.InferInput("INPUT0", [2, 1], "BYTES")
    text.set_data_from_numpy(data)
    logits = np.array([[0, 0, 0, 9, 0, 0, 0, 0, 0, 1]], np.float32)
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        echoed = await client.infer("string_identity", [text])
        classes = await client.infer(
            "classifier",
            fp32_inputs(INPUT0=logits),
            outputs=[aioclient.InferRequestedOutput("OUTPUT0", class_count=2)],
        )
    np.testing.assert_array_equal(echoed.as_numpy("OUTPUT0"), data)
    top = classes.as_numpy("OUTPUT0")
    assert top.shape == (1, 2)
    assert top[0][0].endswith(b":3:three") and top[0][1].endswith(b":9:nine")


async def test_versions(grpc_server: ServerProcess) -> None:
    x = np.zeros((1, 4), np.float32)
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        one = await client.infer("add_versions", fp32_inputs(INPUT0=x), model_version="1")
        two = await client.infer("add_versions", fp32_inputs(INPUT0=x), model_version="2")
    np.testing.assert_array_equal(one.as_numpy("OUTPUT0"), x + 1)
    np.testing.assert_array_equal(two.as_numpy("OUTPUT0"), x + 2)


@pytest.mark.parametrize(
    ("model", "arrays", "status", "fragment"),
    [
        (
            "nosuch",
            {"INPUT0": np.zeros((1, 4), np.float32)},
            "StatusCode.NOT_FOUND",
            "unknown model: 'nosuch'",
        ),
        (
            "add_sub",
            {"INPUT0": np.zeros((1, 4), np.float32), "INPUT1": np.zeros((1, 4), np.float32)},
            "StatusCode.INVALID_ARGUMENT",
            "unexpected shape for input 'INPUT0'",
        ),
    ],
)
async def test_errors(
    grpc_server: ServerProcess, model: str, arrays: dict[str, np.ndarray], status: str, fragment: str
) -> None:
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        with pytest.raises(InferenceServerException) as info:
            await client.infer(model, fp32_inputs(**arrays))
        assert info.value.status() == status
        assert fragment in info.value.message()
        assert await client.is_server_live()


async def test_concurrent_requests(grpc_server: ServerProcess) -> None:
    """Many requests in flight at once on one channel; each gets its own answer."""
    async with aioclient.InferenceServerClient(grpc_server.grpc_url) as client:
        values = [np.full((1, 16), i, np.float32) for i in range(64)]
        results = await asyncio.gather(
            *(
                client.infer("add_sub", fp32_inputs(INPUT0=v, INPUT1=v), request_id=str(i))
                for i, v in enumerate(values)
            )
        )
    for i, result in enumerate(results):
        assert result.get_response().id == str(i)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values[i] * 2)
