"""TorchScript models (platform pytorch_libtorch) through tritonclient; skipped when torch is missing."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Dict, Tuple  # noqa: UP035 - TorchScript reads these annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

from support.server import ServerProcess, running_server

torch = pytest.importorskip("torch")


class AddSub(torch.nn.Module):  # type: ignore[misc]
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # noqa: UP006
        return a + b, a - b


class Scale(torch.nn.Module):  # type: ignore[misc]
    def forward(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return x * factor


class Named(torch.nn.Module):  # type: ignore[misc]
    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:  # noqa: UP006
        return {
            "sum": inputs["left"] + inputs["right"],
            "max": torch.maximum(inputs["left"], inputs["right"]),
        }


def _save(module: Any, target: Path) -> None:
    """TorchScript, the format Triton's PyTorch backend serves (torch 2.13 deprecates making it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(target))


CONFIGS = {
    # <name>__<index> inputs and outputs, dynamic batching with a queue delay so batches form.
    "torch_add_sub": """
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ 4 ] }
]
dynamic_batching { max_queue_delay_microseconds: 200000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
""",
    # Inputs named after forward's arguments, listed in the other order.
    "torch_scale": """
backend: "pytorch"
max_batch_size: 0
input [
  { name: "factor" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }
]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
""",
    # One Dict[str, Tensor] argument; a dict of outputs.
    "torch_named": """
platform: "pytorch_libtorch"
max_batch_size: 4
input [
  { name: "left" data_type: TYPE_INT64 dims: [ 2 ] },
  { name: "right" data_type: TYPE_INT64 dims: [ 2 ] }
]
output [
  { name: "max" data_type: TYPE_INT64 dims: [ 2 ] },
  { name: "sum" data_type: TYPE_INT64 dims: [ 2 ] }
]
""",
}
MODULES = {"torch_add_sub": AddSub, "torch_scale": Scale, "torch_named": Named}


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("torch_repo")
    for name, config in CONFIGS.items():
        _save(MODULES[name](), repo / name / "1" / "model.pt")
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}', encoding="utf-8")
    log = tmp_path_factory.mktemp("logs") / "torch_server.log"
    with running_server(repo, log) as proc:
        yield proc


def _input(module: Any, name: str, array: np.ndarray) -> Any:
    datatype = {np.float32: "FP32", np.int64: "INT64"}[array.dtype.type]
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_torchscript_add_sub_with_indexed_names(torch_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(torch_server.url)
    try:
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        b = np.ones((2, 4), np.float32)
        result = client.infer(
            "torch_add_sub", [_input(httpclient, "INPUT__0", a), _input(httpclient, "INPUT__1", b)]
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__1"), a - b)
        assert client.get_model_metadata("torch_add_sub")["platform"] == "pytorch_libtorch"
    finally:
        client.close()


def test_concurrent_requests_run_in_batches(torch_server: ServerProcess) -> None:
    rows = [np.full((1, 4), i, np.float32) for i in range(8)]

    async def scenario() -> list[Any]:
        client = aiohttpclient.InferenceServerClient(torch_server.url)
        try:
            calls = [
                client.infer(
                    "torch_add_sub",
                    [_input(aiohttpclient, "INPUT__0", r), _input(aiohttpclient, "INPUT__1", r)],
                )
                for r in rows
            ]
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    results = asyncio.run(scenario())
    for row, result in zip(rows, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), row * 2)  # each got its own rows
    client = httpclient.InferenceServerClient(torch_server.url)
    try:
        stats = client.get_inference_statistics("torch_add_sub")["model_stats"][0]
    finally:
        client.close()
    assert stats["inference_count"] >= 8
    assert stats["execution_count"] < stats["inference_count"]
    assert max(b["batch_size"] for b in stats["batch_stats"]) > 1


def test_inputs_bound_by_forward_argument_names(torch_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(torch_server.url)
    try:
        x = np.array([1, 2, 3], np.float32)
        factor = np.array([10], np.float32)
        result = client.infer(
            "torch_scale", [_input(httpclient, "factor", factor), _input(httpclient, "x", x)]
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), x * 10)
    finally:
        client.close()


def test_dict_input_and_dict_output(torch_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(torch_server.url)
    try:
        left = np.array([[1, 5]], np.int64)
        right = np.array([[4, 2]], np.int64)
        result = client.infer(
            "torch_named", [_input(httpclient, "left", left), _input(httpclient, "right", right)]
        )
        assert result.as_numpy("sum").tolist() == [[5, 7]]
        assert result.as_numpy("max").tolist() == [[4, 5]]
    finally:
        client.close()
