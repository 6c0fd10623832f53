"""The GPU path on a real NVIDIA GPU, through a real server and tritonclient (HTTP and gRPC): ONNX Runtime's
CUDA provider, a TorchScript ResNet-class model on cuda:0, a Python model told its GPU, CUDA shared memory,
and the nv_gpu_* metrics moving under load. Every test skips with its reason on a machine without a GPU;
`scripts/gpu_check.sh` runs them (and the GPU benchmark) on one.
"""

from __future__ import annotations

import base64
import re
import textwrap
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from modelport.backends.devices import visible_gpus
from support.models import classifier_graph, write_onnx
from support.server import HOST, ServerProcess, free_port, running_server

pytestmark = pytest.mark.gpu

if not visible_gpus():
    pytest.skip("no NVIDIA GPU found through NVML (needs a GPU and nvidia-ml-py)", allow_module_level=True)

RNG = np.random.default_rng(17)
CLASSES = 10

ONNX_GPU_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0 ] } ]
"""

TORCH_GPU_CONFIG = """
platform: "pytorch_libtorch"
max_batch_size: 16
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 64, 64 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 100 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0 ] } ]
"""

PYTHON_GPU_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [
  { name: "KIND" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "DEVICE" data_type: TYPE_STRING dims: [ 1 ] }
]
instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0 ] } ]
"""

PYTHON_GPU_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.kind = args["model_instance_kind"]
        self.device = args["model_instance_device_id"]

    def execute(self, requests):
        out = []
        for _ in requests:
            kind = pb_utils.Tensor("KIND", np.array([self.kind.encode()], dtype=np.object_))
            device = pb_utils.Tensor("DEVICE", np.array([self.device.encode()], dtype=np.object_))
            out.append(pb_utils.InferenceResponse(output_tensors=[kind, device]))
        return out
"""


def _torch() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch here is a CPU build or sees no CUDA device")
    return torch


def _resnet_block_model(torch: Any) -> Any:
    """A small ResNet-class network (conv, batch norm, residual blocks, pooling) with fixed random weights."""
    nn = torch.nn

    class Block(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(y)))

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        Block(32),
        Block(32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 100),
    )
    return net.eval()


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("gpu_repo")
    write_onnx(repo / "onnx_gpu" / "1" / "model.onnx", classifier_graph(CLASSES))
    (repo / "onnx_gpu" / "config.pbtxt").write_text(f'name: "onnx_gpu"\n{ONNX_GPU_CONFIG}')
    # The same model on the CPU: CUDA shared memory needs no GPU model (the server copies the region).
    write_onnx(repo / "onnx_cpu" / "1" / "model.onnx", classifier_graph(CLASSES))
    cpu_config = ONNX_GPU_CONFIG.replace("kind: KIND_GPU gpus: [ 0 ]", "kind: KIND_CPU")
    (repo / "onnx_cpu" / "config.pbtxt").write_text(f'name: "onnx_cpu"\n{cpu_config}')
    (repo / "python_gpu" / "1").mkdir(parents=True)
    (repo / "python_gpu" / "1" / "model.py").write_text(textwrap.dedent(PYTHON_GPU_MODEL))
    (repo / "python_gpu" / "config.pbtxt").write_text(f'name: "python_gpu"\n{PYTHON_GPU_CONFIG}')
    try:
        import torch
    except ImportError:
        return repo
    (repo / "torch_gpu" / "1").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(_resnet_block_model(torch), torch.zeros(1, 3, 64, 64))
        traced.save(str(repo / "torch_gpu" / "1" / "model.pt"))
    (repo / "torch_gpu" / "config.pbtxt").write_text(f'name: "torch_gpu"\n{TORCH_GPU_CONFIG}')
    return repo


@pytest.fixture(scope="module")
def gpu_server(gpu_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("gpu_logs") / "server.log"
    port = free_port()
    args = [
        "--strict-readiness=false",
        "--metrics-interval-ms=200",
        "--allow-metrics=true",
        f"--metrics-port={port}",
        f"--metrics-address={HOST}",
    ]
    with running_server(gpu_repository, log, args, grpc=True) as proc:
        proc.metrics_url = f"http://{HOST}:{port}/metrics"  # type: ignore[attr-defined]
        yield proc


def _ready(server: ServerProcess, model: str) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120.0)
    if not client.is_model_ready(model):
        index = {m["name"]: m for m in client.get_model_repository_index()}
        pytest.fail(f"{model} did not load on the GPU: {index.get(model)}\n{server.log()[-4000:]}")
    return client


def _infer(
    protocol: str, server: ServerProcess, model: str, name: str, data: np.ndarray, out: str
) -> np.ndarray:
    if protocol == "grpc":
        gclient = grpcclient.InferenceServerClient(server.grpc_url)
        ginput = grpcclient.InferInput(name, list(data.shape), "FP32")
        ginput.set_data_from_numpy(data)
        result: Any = gclient.infer(model, [ginput])
    else:
        hclient = httpclient.InferenceServerClient(server.http_url, network_timeout=120.0)
        hinput = httpclient.InferInput(name, list(data.shape), "FP32")
        hinput.set_data_from_numpy(data, binary_data=True)
        result = hclient.infer(model, [hinput])
    array = result.as_numpy(out)
    assert array is not None
    return np.asarray(array)


def _server_uses_gpu(server: ServerProcess) -> bool:
    """Whether NVML lists the server's process among GPU 0's compute processes (what nvidia-smi shows)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return server.pid in {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_onnx_model_runs_on_the_cuda_provider(gpu_server: ServerProcess, protocol: str) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has no CUDA provider: {ort.get_available_providers()}")
    client = _ready(gpu_server, "onnx_gpu")
    config = client.get_model_config("onnx_gpu")
    assert config["instance_group"][0]["kind"] == "KIND_GPU" and config["instance_group"][0]["gpus"] == [0]
    data = RNG.standard_normal((4, CLASSES)).astype(np.float32)
    session = ort.InferenceSession(
        classifier_graph(CLASSES).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    expected = session.run(["OUTPUT0"], {"INPUT0": data})[0]
    got = _infer(protocol, gpu_server, "onnx_gpu", "INPUT0", data, "OUTPUT0")
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert _server_uses_gpu(gpu_server), "the server process holds no CUDA context on GPU 0"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_torchscript_resnet_runs_on_cuda_and_batches(gpu_server: ServerProcess, protocol: str) -> None:
    torch = _torch()
    _ready(gpu_server, "torch_gpu")
    data = RNG.standard_normal((16, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = _resnet_block_model(torch)(torch.from_numpy(data)).numpy()
    # Sixteen single-image requests at once: the dynamic batcher joins them; results come back to each caller.
    results: dict[int, np.ndarray] = {}

    def one(i: int) -> None:
        results[i] = _infer(protocol, gpu_server, "torch_gpu", "INPUT__0", data[i : i + 1], "OUTPUT__0")[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    got = np.stack([results[i] for i in range(16)])
    # cuDNN may use TF32 convolutions: compare loosely against the CPU float32 result.
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-2)
    stats = httpclient.InferenceServerClient(gpu_server.http_url).get_inference_statistics("torch_gpu")
    model_stats = stats["model_stats"][0]
    assert model_stats["execution_count"] < model_stats["inference_count"], "no request was batched"


def test_python_model_is_told_its_gpu(gpu_server: ServerProcess) -> None:
    client = _ready(gpu_server, "python_gpu")
    value = httpclient.InferInput("IN", [1], "FP32")
    value.set_data_from_numpy(np.zeros(1, np.float32))
    result = client.infer("python_gpu", [value])
    assert [v.decode() for v in (result.as_numpy("KIND")[0], result.as_numpy("DEVICE")[0])] == ["GPU", "0"]


class _DeviceRegion:
    """A CUDA allocation on GPU 0 with its IPC handle, made with tritonclient's utilities where cuda-python
    is installed, else with CuPy (the same cudaIpcGetMemHandle bytes)."""

    def __init__(self, name: str, byte_size: int) -> None:
        try:
            import tritonclient.utils.cuda_shared_memory as cudashm
        except Exception:  # tritonclient raises on import without cuda-python
            cudashm = None
        self._cudashm = cudashm
        if cudashm is not None:
            self._handle = cudashm.create_shared_memory_region(name, byte_size, 0)
            self.raw_handle = cudashm.get_raw_handle(self._handle)
            return
        cupy = pytest.importorskip("cupy", reason="neither cuda-python (tritonclient's utilities) nor CuPy")
        self._memory = cupy.cuda.alloc(byte_size)
        self.raw_handle = base64.b64encode(bytes(cupy.cuda.runtime.ipcGetMemHandle(self._memory.ptr)))
        self._cupy = cupy

    def write(self, array: np.ndarray) -> None:
        if self._cudashm is not None:
            self._cudashm.set_shared_memory_region(self._handle, [array])
        else:
            self._memory.copy_from_host(array.ctypes.data, array.nbytes)

    def read(self, dtype: type, shape: list[int]) -> np.ndarray:
        if self._cudashm is not None:
            return np.array(self._cudashm.get_contents_as_numpy(self._handle, dtype, shape))
        host: np.ndarray = np.empty(shape, dtype)
        self._memory.copy_to_host(host.ctypes.data, host.nbytes)
        return host

    def close(self) -> None:
        if self._cudashm is not None:
            self._cudashm.destroy_shared_memory_region(self._handle)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cuda_shared_memory_round_trip(gpu_server: ServerProcess, protocol: str) -> None:
    import onnxruntime as ort

    _ready(gpu_server, "onnx_cpu")
    data = RNG.standard_normal((2, CLASSES)).astype(np.float32)
    expected = ort.InferenceSession(
        classifier_graph(CLASSES).SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(["OUTPUT0"], {"INPUT0": data})[0]
    module: Any = grpcclient if protocol == "grpc" else httpclient
    client: Any = (
        grpcclient.InferenceServerClient(gpu_server.grpc_url)
        if protocol == "grpc"
        else httpclient.InferenceServerClient(gpu_server.http_url)
    )
    inputs_region, outputs_region = _DeviceRegion("in", data.nbytes), _DeviceRegion("out", expected.nbytes)
    try:
        inputs_region.write(data)
        client.register_cuda_shared_memory(f"in_{protocol}", inputs_region.raw_handle, 0, data.nbytes)
        client.register_cuda_shared_memory(f"out_{protocol}", outputs_region.raw_handle, 0, expected.nbytes)
        status = client.get_cuda_shared_memory_status()
        assert len(status if protocol == "http" else status.regions) == 2
        infer_input = module.InferInput("INPUT0", [2, CLASSES], "FP32")
        infer_input.set_shared_memory(f"in_{protocol}", data.nbytes)
        output = module.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory(f"out_{protocol}", expected.nbytes)
        client.infer("onnx_cpu", [infer_input], outputs=[output])
        np.testing.assert_allclose(
            outputs_region.read(np.float32, [2, CLASSES]), expected, rtol=1e-3, atol=1e-4
        )
    finally:
        client.unregister_cuda_shared_memory()
        inputs_region.close()
        outputs_region.close()


def _gpu_samples(server: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()  # type: ignore[attr-defined]
    samples = {}
    for line in text.splitlines():
        match = re.match(r'^(nv_gpu_\w+|nv_energy_consumption)\{gpu_uuid="GPU-[^"]+"\} (\S+)$', line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_gpu_metrics_move_under_load(gpu_server: ServerProcess) -> None:
    _torch()
    _ready(gpu_server, "torch_gpu")
    before = _gpu_samples(gpu_server)
    assert {
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    } <= set(before), before
    assert 0 < before["nv_gpu_memory_used_bytes"] <= before["nv_gpu_memory_total_bytes"]
    client = grpcclient.InferenceServerClient(gpu_server.grpc_url)
    batch = grpcclient.InferInput("INPUT__0", [16, 3, 64, 64], "FP32")
    batch.set_data_from_numpy(RNG.standard_normal((16, 3, 64, 64)).astype(np.float32))
    peak_utilization = 0.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and peak_utilization == 0.0:
        for _ in range(50):
            client.infer("torch_gpu", [batch])
        peak_utilization = max(peak_utilization, _gpu_samples(gpu_server)["nv_gpu_utilization"])
    after = _gpu_samples(gpu_server)
    assert peak_utilization > 0.0, "nv_gpu_utilization stayed 0 under load"
    assert after["nv_energy_consumption"] > before["nv_energy_consumption"]
