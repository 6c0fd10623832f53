"""Without torch a PyTorch model is UNAVAILABLE with a message saying so; the server serves the rest.

The server runs with a `torch` package on PYTHONPATH whose import fails, as if torch were not
installed; this test therefore runs whether torch is installed or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from support.models import small_models
from support.server import ServerProcess, running_server

CONFIG = """
name: "needs_torch"
platform: "pytorch_libtorch"
max_batch_size: 4
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""


@pytest.fixture(scope="module")
def torchless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("torchless_repo")
    small_models.write_add_sub(repo)
    (repo / "needs_torch" / "1").mkdir(parents=True)
    (repo / "needs_torch" / "1" / "model.pt").write_bytes(b"never read")
    (repo / "needs_torch" / "config.pbtxt").write_text(CONFIG, encoding="utf-8")
    shadow = tmp_path_factory.mktemp("no_torch")
    (shadow / "torch").mkdir()
    (shadow / "torch" / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    log = tmp_path_factory.mktemp("logs") / "torchless_server.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(shadow))
        with running_server(repo, log) as proc:
            yield proc


def test_a_pytorch_model_without_torch_is_unavailable_with_the_reason(
    torchless_server: ServerProcess,
) -> None:
    client = httpclient.InferenceServerClient(torchless_server.url)
    try:
        entry = next(e for e in client.get_model_repository_index() if e["name"] == "needs_torch")
        assert entry["state"] == "UNAVAILABLE"
        assert "torch, which is not installed" in entry["reason"]
        assert "pip install modelport[torch]" in entry["reason"]
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = httpclient.InferInput(name, [1, 16], "FP32")
            tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
            inputs.append(tensor)
        assert client.infer("add_sub", inputs).as_numpy("OUTPUT0").tolist() == [[2.0] * 16]
    finally:
        client.close()
