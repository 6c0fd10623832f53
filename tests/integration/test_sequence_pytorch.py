"""A TorchScript model with sequence controls and implicit state (skipped when torch is missing)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Tuple  # noqa: UP035 - TorchScript reads these annotations

import numpy as np
import pytest
import tritonclient.http as httpclient

from support.server import ServerProcess, running_server

torch = pytest.importorskip("torch")


class Accumulate(torch.nn.Module):  # type: ignore[misc]
    """OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT + 100 * START (START shows the control arrives)."""

    def forward(
        self,
        INPUT: torch.Tensor,
        START: torch.Tensor,
        INPUT_STATE: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:  # noqa: UP006
        total = INPUT_STATE + INPUT + 100 * START
        return total, total


CONFIG = """
platform: "pytorch_libtorch"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
sequence_batching {
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]
  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_FP32 dims: [ 2 ] } ]
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("torch_sequence_repo")
    folder = repo / "torch_accumulate"
    (folder / "1").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Accumulate()).save(str(folder / "1" / "model.pt"))
    (folder / "config.pbtxt").write_text(CONFIG)
    with running_server(repo, tmp_path_factory.mktemp("torch_sequence_logs") / "server.log") as proc:
        yield proc


def test_torchscript_model_gets_controls_and_keeps_state(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)

    def send(corrid: int, value: float, start: bool = False, end: bool = False) -> list[float]:
        tensor = httpclient.InferInput("INPUT", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.full((1, 2), value, np.float32))
        result = client.infer(
            "torch_accumulate", [tensor], sequence_id=corrid, sequence_start=start, sequence_end=end
        )
        return result.as_numpy("OUTPUT")[0].tolist()

    assert send(1, 1, start=True) == [101.0, 101.0]
    assert send(2, 5, start=True) == [105.0, 105.0]
    assert send(1, 2) == [103.0, 103.0]
    assert send(2, 1, end=True) == [106.0, 106.0]
    assert send(1, 3, end=True) == [106.0, 106.0]
    client.close()
