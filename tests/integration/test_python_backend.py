"""Python-backend models (model.py with TritonPythonModel) through tritonclient HTTP and gRPC.

One server process serves every model here: the examples in examples/python_models, ONNX models
they call (BLS), and small models written below for errors, auto-complete, batching, crashes
under process isolation and decoupled streaming.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import textwrap
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from support.models import small_models, write_classifier
from support.server import ServerProcess, running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python_models"
PROCESS = 'parameters { key: "MODELPORT_ISOLATION" value { string_value: "process" } }\n'
STREAM_TIMEOUT_S = 20.0

MODELS: dict[str, tuple[str | None, str]] = {
    "py_errors": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
        """
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    value = int(pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()[0])
                    if value == 1:
                        code = pb_utils.TritonError.INVALID_ARG
                        error = pb_utils.TritonError("value 1 is not allowed", code)
                        responses.append(pb_utils.InferenceResponse(error=error))
                    elif value == 2:
                        raise pb_utils.TritonModelException("boom in execute")
                    elif value == 3:
                        error = pb_utils.TritonError("no such thing")
                        responses.append(pb_utils.InferenceResponse(error=error))
                    elif value == 7:
                        responses.append(pb_utils.InferenceResponse([]))  # forgets OUTPUT0
                    else:
                        tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
                        out = pb_utils.Tensor("OUTPUT0", tensor.as_numpy())
                        responses.append(pb_utils.InferenceResponse([out]))
                return responses
        """,
    ),
    "py_auto": (
        None,
        """
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            @staticmethod
            def auto_complete_config(auto_complete_model_config):
                config = auto_complete_model_config
                config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [3]})
                config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [3]})
                config.set_max_batch_size(4)
                config.set_dynamic_batching()
                return config

            def execute(self, requests):
                inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
                return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", i * 2)]) for i in inputs]
        """,
    ),
    "py_batch": (
        """
        backend: "python"
        max_batch_size: 16
        input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [
          { name: "ROWS" data_type: TYPE_INT32 dims: [ 1 ] },
          { name: "REQUESTS" data_type: TYPE_INT32 dims: [ 1 ] },
          { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }
        ]
        dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 300000 }
        instance_group [ { count: 1 kind: KIND_CPU } ]
        """,
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
                rows = sum(len(i) for i in inputs)
                return [
                    pb_utils.InferenceResponse([
                        pb_utils.Tensor("ROWS", np.full((len(i), 1), rows, np.int32)),
                        pb_utils.Tensor("REQUESTS", np.full((len(i), 1), len(requests), np.int32)),
                        pb_utils.Tensor("OUTPUT0", i + 1),
                    ])
                    for i in inputs
                ]
        """,
    ),
    "py_crash": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]
        """
        + PROCESS,
        """
        import ctypes
        import os
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                value = int(pb_utils.get_input_tensor_by_name(requests[0], "INPUT0").as_numpy()[0])
                if value == 1:
                    os._exit(3)
                if value == 2:
                    ctypes.string_at(0)  # segmentation fault
                pid = np.array([os.getpid()], dtype=np.int64)
                return [pb_utils.InferenceResponse([pb_utils.Tensor("PID", pid)]) for _ in requests]
        """,
    ),
    "py_upper": (
        """
        backend: "python"
        max_batch_size: 4
        input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
        output [ { name: "UPPER" data_type: TYPE_STRING dims: [ 1 ] } ]
        """,
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
                    rows = [[t.decode().upper().encode() for t in row] for row in text]
                    upper = np.array(rows, dtype=np.object_)
                    responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", upper)]))
                return responses
        """,
    ),
    "py_params": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] } ]
        parameters { key: "custom_key" value { string_value: "custom_value" } }
        """,
        """
        import json
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def initialize(self, args):
                self.args = args

            def execute(self, requests):
                responses = []
                for request in requests:
                    info = {
                        "args": {k: v for k, v in self.args.items() if k != "model_config"},
                        "custom": json.loads(self.args["model_config"])["parameters"],
                        "parameters": json.loads(request.parameters()),
                        "request_id": request.request_id(),
                        "requested": request.requested_output_names(),
                    }
                    out = np.array([json.dumps(info).encode()], dtype=np.object_)
                    responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("INFO", out)]))
                return responses
        """,
    ),
    "py_init_fails": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
        """
        class TritonPythonModel:
            def initialize(self, args):
                raise RuntimeError("cannot start: weights missing")

            def execute(self, requests):
                return []
        """,
    ),
    "bls_classifier": (
        """
        backend: "python"
        max_batch_size: 8
        input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
        output [
          { name: "PROBS" data_type: TYPE_FP32 dims: [ 10 ] },
          { name: "TOP" data_type: TYPE_INT64 dims: [ 1 ] }
        ]
        """,
        """
        import json
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    target = json.loads(request.parameters()).get("target_model", "classifier")
                    call = pb_utils.InferenceRequest(
                        model_name=target,
                        requested_output_names=["OUTPUT0"],
                        inputs=[pb_utils.get_input_tensor_by_name(request, "INPUT0")],
                    )
                    answer = call.exec()
                    if answer.has_error():
                        raise pb_utils.TritonModelException(answer.error().message())
                    probs = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
                    top = np.argmax(probs, axis=1).astype(np.int64).reshape(-1, 1)
                    outputs = [pb_utils.Tensor("PROBS", probs), pb_utils.Tensor("TOP", top)]
                    responses.append(pb_utils.InferenceResponse(outputs))
                return responses
        """,
    ),
    "stream_async": (
        """
        backend: "python"
        max_batch_size: 0
        model_transaction_policy { decoupled: true }
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
        """
        import asyncio
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            async def execute(self, requests):
                await asyncio.gather(*(self.stream(r) for r in requests))

            async def stream(self, request):
                count = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
                sender = request.get_response_sender()
                if count < 0:
                    error = pb_utils.TritonError("negative count", pb_utils.TritonError.INVALID_ARG)
                    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                    sender.send(pb_utils.InferenceResponse(error=error), flags=final)
                    return
                for index in range(count):
                    await asyncio.sleep(0.005)
                    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if index == count - 1 else 0
                    out = pb_utils.Tensor("OUT", np.array([index * 10], np.int32))
                    sender.send(pb_utils.InferenceResponse([out]), flags=final)
                if count == 0:
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        """,
    ),
    "py_echo_process": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
        output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
        """
        + PROCESS,
        """
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                x = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
                return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", v * 2)]) for v in x]
        """,
    ),
    "bls_stream": (
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "COLLECTED" data_type: TYPE_INT32 dims: [ -1 ] } ]
        """,
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    call = pb_utils.InferenceRequest(
                        model_name="repeat_decoupled",
                        requested_output_names=["OUT"],
                        inputs=[pb_utils.get_input_tensor_by_name(request, "IN")],
                    )
                    values = []
                    for answer in call.exec(decoupled=True):
                        if answer.has_error():
                            raise pb_utils.TritonModelException(answer.error().message())
                        out = pb_utils.get_output_tensor_by_name(answer, "OUT")
                        values.append(-1 if out is None else int(out.as_numpy()[0]))  # -1: the empty last one
                    collected = pb_utils.Tensor("COLLECTED", np.array(values, dtype=np.int32))
                    responses.append(pb_utils.InferenceResponse([collected]))
                return responses
        """,
    ),
    "stream_crash_process": (
        """
        backend: "python"
        max_batch_size: 0
        model_transaction_policy { decoupled: true }
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """
        + PROCESS,
        """
        import os
        import time
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                for request in requests:
                    count = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
                    sender = request.get_response_sender()
                    for index in range(abs(count)):
                        out = pb_utils.Tensor("OUT", np.array([index], np.int32))
                        sender.send(pb_utils.InferenceResponse([out]))
                    if count < 0:
                        time.sleep(0.2)  # let the responses reach the server, then die mid-stream
                        os._exit(5)
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        """,
    ),
}
# The same models, isolated in their own processes.
for _name in ("py_upper", "py_init_fails", "py_errors", "bls_stream"):
    MODELS[f"{_name}_process"] = (MODELS[_name][0] or "") + PROCESS, MODELS[_name][1]


def _write_inline_models(repo: Path) -> None:
    for name, (config, code) in MODELS.items():
        version = repo / name / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text(textwrap.dedent(code).lstrip(), encoding="utf-8")
        if config is not None:
            (repo / name / "config.pbtxt").write_text(
                f'name: "{name}"\n' + textwrap.dedent(config), encoding="utf-8"
            )


def _copy_example(repo: Path, example: str, name: str, extra_config: str = "") -> None:
    target = repo / name
    shutil.copytree(EXAMPLES / example, target)
    config = (
        (target / "config.pbtxt").read_text(encoding="utf-8").replace(f'name: "{example}"', f'name: "{name}"')
    )
    (target / "config.pbtxt").write_text(config + extra_config, encoding="utf-8")


def build_repository(repo: Path) -> Path:
    small_models.write_add_sub(repo)
    write_classifier(repo)
    _copy_example(repo, "add_sub_python", "add_sub_python")
    _copy_example(repo, "add_sub_python", "add_sub_python_process", PROCESS)
    _copy_example(repo, "bls_add_sub", "bls_add_sub")
    _copy_example(repo, "bls_add_sub", "bls_add_sub_process", PROCESS)
    _copy_example(repo, "repeat_decoupled", "repeat_decoupled")
    _copy_example(repo, "repeat_decoupled", "repeat_decoupled_process", PROCESS)
    _write_inline_models(repo)
    return repo


@pytest.fixture(scope="module")
def python_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    repo = build_repository(tmp_path_factory.mktemp("python_repo"))
    log = tmp_path_factory.mktemp("logs") / "python_server.log"
    with running_server(repo, log, grpc=True) as proc:
        _wait_loaded(proc)
        yield proc, proc.grpc_url


def _wait_loaded(server: ServerProcess, timeout_s: float = 60.0) -> None:
    client = httpclient.InferenceServerClient(server.url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            index = client.get_model_repository_index()
            if index and all(entry.get("state") in ("READY", "UNAVAILABLE") for entry in index):
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError(f"models did not finish loading:\n{server.log()}")


@pytest.fixture()
def http(python_server: tuple[ServerProcess, str]) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(python_server[0].url)
    yield client
    client.close()


@pytest.fixture()
def grpc(python_server: tuple[ServerProcess, str]) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(python_server[1])
    yield client
    client.close()


def _inputs(module: Any, **arrays: np.ndarray) -> list[Any]:
    tensors = []
    for name, array in arrays.items():
        datatype = (
            "BYTES"
            if array.dtype == object
            else {np.float32: "FP32", np.int32: "INT32", np.int64: "INT64"}[array.dtype.type]
        )
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


# --- add_sub ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["add_sub_python", "add_sub_python_process"])
def test_add_sub_in_python_gives_what_the_onnx_model_gives(
    model: str, http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    a = np.random.default_rng(0).random((3, 16), dtype=np.float32)
    b = np.random.default_rng(1).random((3, 16), dtype=np.float32)
    reference = http.infer("add_sub", _inputs(httpclient, INPUT0=a, INPUT1=b))
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer(model, _inputs(module, INPUT0=a, INPUT1=b))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), reference.as_numpy("OUTPUT0"))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), reference.as_numpy("OUTPUT1"))


def test_python_models_report_platform_python(http: httpclient.InferenceServerClient) -> None:
    metadata = http.get_model_metadata("add_sub_python")
    assert metadata["platform"] == "python"
    assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1"]


@pytest.mark.parametrize("model", ["py_upper", "py_upper_process"])
def test_bytes_tensors_round_trip(
    model: str, http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    text = np.array([[b"hello"], [b"world"]], dtype=np.object_)
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer(model, _inputs(module, TEXT=text))
        assert result.as_numpy("UPPER").tolist() == [[b"HELLO"], [b"WORLD"]]


def test_large_tensors_grow_the_shared_memory_of_an_isolated_model(
    http: httpclient.InferenceServerClient,
) -> None:
    for size in (10, 700_000, 700_000, 3_000_000, 10):  # 2.8 MB and 12 MB do not fit the first 1 MiB
        x = np.arange(size, dtype=np.float32)
        result = http.infer("py_echo_process", _inputs(httpclient, X=x))
        np.testing.assert_array_equal(result.as_numpy("Y"), x * 2)


def test_initialize_args_parameters_and_request_details(http: httpclient.InferenceServerClient) -> None:
    import json

    result = http.infer(
        "py_params",
        _inputs(httpclient, INPUT0=np.array([1], np.int32)),
        request_id="req-7",
        parameters={"temperature": "hot", "count": 3},
    )
    info = json.loads(result.as_numpy("INFO")[0])
    args = info["args"]
    assert args["model_name"] == "py_params"
    assert args["model_version"] == "1"
    assert args["model_instance_kind"] == "CPU"
    assert args["model_instance_name"] == "py_params_0"
    assert args["model_instance_device_id"] == "0"
    assert args["model_repository"].endswith("/py_params")
    assert info["custom"] == {"custom_key": {"string_value": "custom_value"}}
    assert info["parameters"] == {"temperature": "hot", "count": 3}
    assert info["request_id"] == "req-7"
    assert info["requested"] == ["INFO"]


# --- errors -----------------------------------------------------------------------------------
def test_triton_error_in_a_response_reaches_the_client_with_its_code(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        http.infer("py_errors", _inputs(httpclient, INPUT0=np.array([1], np.int32)))
    assert raised.value.status() == "400"
    assert "value 1 is not allowed" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        grpc.infer("py_errors", _inputs(grpcclient, INPUT0=np.array([1], np.int32)))
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as raised:
        http.infer("py_errors", _inputs(httpclient, INPUT0=np.array([3], np.int32)))
    assert raised.value.status() == "500"  # TritonError defaults to INTERNAL
    assert "no such thing" in raised.value.message()


def test_a_missing_output_is_the_servers_fault(http: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        http.infer("py_errors", _inputs(httpclient, INPUT0=np.array([7], np.int32)))
    assert raised.value.status() == "500"
    assert "model 'py_errors' did not produce output 'OUTPUT0'" in raised.value.message()


@pytest.mark.parametrize("model", ["py_errors", "py_errors_process"])
def test_an_exception_in_execute_fails_the_request_with_trace(
    model: str, http: httpclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        http.infer(model, _inputs(httpclient, INPUT0=np.array([2], np.int32)))
    message = raised.value.message()
    assert raised.value.status() == "500"
    assert f"Failed to process the request(s) for model instance '{model}_0'" in message
    assert "TritonModelException: boom in execute" in message
    assert "model.py" in message and "execute" in message
    with pytest.raises(InferenceServerException) as raised:
        http.infer(model, _inputs(httpclient, INPUT0=np.array([1], np.int32)))
    assert raised.value.status() == "400" and "value 1 is not allowed" in raised.value.message()
    ok = http.infer(model, _inputs(httpclient, INPUT0=np.array([5], np.int32)))
    assert ok.as_numpy("OUTPUT0").tolist() == [5]


@pytest.mark.parametrize("model", ["py_init_fails", "py_init_fails_process"])
def test_a_model_whose_initialize_fails_is_unavailable_with_the_reason(
    model: str, http: httpclient.InferenceServerClient
) -> None:
    entry = next(e for e in http.get_model_repository_index() if e["name"] == model)
    assert entry["state"] == "UNAVAILABLE"
    assert "RuntimeError: cannot start: weights missing" in entry["reason"]
    assert http.is_model_ready("add_sub_python")


# --- BLS --------------------------------------------------------------------------------------
def test_bls_calls_the_onnx_classifier(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    logits = np.zeros((2, 10), np.float32)
    logits[0, 3] = 5.0
    logits[1, 7] = 5.0
    reference = http.infer("classifier", _inputs(httpclient, INPUT0=logits)).as_numpy("OUTPUT0")
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer("bls_classifier", _inputs(module, INPUT0=logits))
        np.testing.assert_allclose(result.as_numpy("PROBS"), reference)
        assert result.as_numpy("TOP").tolist() == [[3], [7]]


def test_a_bls_error_reaches_the_calling_model(http: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        http.infer(
            "bls_classifier",
            _inputs(httpclient, INPUT0=np.zeros((1, 10), np.float32)),
            parameters={"target_model": "no_such_model"},
        )
    assert raised.value.status() == "500"
    assert "no_such_model" in raised.value.message()


@pytest.mark.parametrize("model", ["bls_stream", "bls_stream_process"])
def test_bls_iterates_the_responses_of_a_decoupled_model(
    model: str, http: httpclient.InferenceServerClient
) -> None:
    result = http.infer(model, _inputs(httpclient, IN=np.array([4], np.int32)))
    assert result.as_numpy("COLLECTED").tolist() == [0, 1, 2, 3, -1]


@pytest.mark.parametrize("model", ["bls_add_sub", "bls_add_sub_process"])
def test_async_bls_runs_two_calls_at_once(model: str, http: httpclient.InferenceServerClient) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)
    result = http.infer(model, _inputs(httpclient, INPUT0=a, INPUT1=b))
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), 2 * a)


# --- auto-complete ----------------------------------------------------------------------------
def test_auto_complete_config_fills_the_configuration(http: httpclient.InferenceServerClient) -> None:
    config = http.get_model_config("py_auto")
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 4
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [("INPUT0", "TYPE_FP32", [3])]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("OUTPUT0", "TYPE_FP32", [3])
    ]
    assert config["dynamic_batching"]["preferred_batch_size"] == [4]
    result = http.infer("py_auto", _inputs(httpclient, INPUT0=np.ones((2, 3), np.float32)))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((2, 3), 2, np.float32))


# --- batching ---------------------------------------------------------------------------------
def test_dynamic_batching_hands_python_models_several_requests(
    python_server: tuple[ServerProcess, str],
) -> None:
    async def scenario() -> list[Any]:
        client = aiohttpclient.InferenceServerClient(python_server[0].url)
        try:
            calls = [
                client.infer("py_batch", _inputs(aiohttpclient, INPUT0=np.full((1, 1), i, np.float32)))
                for i in range(8)
            ]
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    results = asyncio.run(scenario())
    for i, result in enumerate(results):
        assert result.as_numpy("OUTPUT0").tolist() == [[i + 1.0]]  # each request got its own rows back
    batch_sizes = [int(r.as_numpy("ROWS")[0, 0]) for r in results]
    assert max(batch_sizes) > 1, batch_sizes
    assert max(int(r.as_numpy("REQUESTS")[0, 0]) for r in results) > 1


# --- process isolation ------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "reason"), [(1, "exit code 3"), (2, "SIGSEGV")])
def test_a_crashing_model_process_fails_its_request_and_comes_back(
    value: int, reason: str, http: httpclient.InferenceServerClient
) -> None:
    before = int(
        http.infer("py_crash", _inputs(httpclient, INPUT0=np.array([0], np.int32))).as_numpy("PID")[0]
    )
    with pytest.raises(InferenceServerException) as raised:
        http.infer("py_crash", _inputs(httpclient, INPUT0=np.array([value], np.int32)))
    assert raised.value.status() == "500"
    assert "exited unexpectedly" in raised.value.message() and reason in raised.value.message()
    # The server and every other model keep serving while the instance restarts its process.
    assert http.is_server_live()
    assert http.infer(
        "add_sub_python_process",
        _inputs(httpclient, INPUT0=np.ones((1, 16), np.float32), INPUT1=np.ones((1, 16), np.float32)),
    ).as_numpy("OUTPUT0").tolist() == [[2.0] * 16]
    after = int(
        http.infer("py_crash", _inputs(httpclient, INPUT0=np.array([0], np.int32))).as_numpy("PID")[0]
    )
    assert after != before
    assert http.is_model_ready("py_crash")


# --- decoupled --------------------------------------------------------------------------------
def _stream(
    grpc_url: str, model: str, values: list[int], expected: int, enable_empty_final: bool = False
) -> dict[str, list[tuple[Any, bool]]]:
    """Send one request per value on one stream; collect `expected` (OUT, final flag) by request id.

    Stream errors carry no request id in tritonclient's callback; they are collected under "errors".
    """
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(grpc_url)
    collected: dict[str, list[tuple[Any, bool]]] = {str(i): [] for i in range(len(values))}
    collected["errors"] = []
    try:
        client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), results))
        for i, value in enumerate(values):
            client.async_stream_infer(
                model,
                _inputs(grpcclient, IN=np.array([value], np.int32)),
                request_id=str(i),
                enable_empty_final_response=enable_empty_final,
            )
        for _ in range(expected):
            result, error = results.get(timeout=STREAM_TIMEOUT_S)
            if error is not None:
                collected["errors"].append((error, True))
                continue
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            out = result.as_numpy("OUT")
            collected[response.id].append((None if out is None else int(out[0]), final))
        with pytest.raises(queue.Empty):
            results.get(timeout=0.3)  # and nothing more
    finally:
        client.stop_stream()
        client.close()
    return collected


@pytest.mark.parametrize("model", ["repeat_decoupled", "repeat_decoupled_process"])
def test_a_decoupled_model_streams_n_responses_over_grpc(
    model: str, python_server: tuple[ServerProcess, str]
) -> None:
    collected = _stream(python_server[1], model, [3, 5, 1], expected=9)
    assert [v for v, _ in collected["0"]] == [0, 1, 2]
    assert [v for v, _ in collected["1"]] == [0, 1, 2, 3, 4]
    assert [v for v, _ in collected["2"]] == [0]
    # The model ends each request with a bare FINAL flag: no response carries it unless asked for.
    assert not any(final for items in collected.values() for _, final in items)


@pytest.mark.parametrize("model", ["repeat_decoupled", "repeat_decoupled_process"])
def test_an_empty_final_response_closes_each_request_when_asked(
    model: str, python_server: tuple[ServerProcess, str]
) -> None:
    collected = _stream(python_server[1], model, [2, 0], expected=4, enable_empty_final=True)
    assert collected["0"] == [(0, False), (1, False), (None, True)]
    assert collected["1"] == [(None, True)]  # zero responses, then the empty final one


def test_async_decoupled_execute_and_error_responses(python_server: tuple[ServerProcess, str]) -> None:
    collected = _stream(python_server[1], "stream_async", [3, -1], expected=4)
    assert collected["0"] == [(0, False), (10, False), (20, True)]
    assert collected["1"] == []
    [(error, _)] = collected["errors"]
    assert "negative count" in str(error)


def test_a_decoupled_model_process_dying_mid_stream_ends_the_stream_with_the_reason(
    python_server: tuple[ServerProcess, str],
) -> None:
    collected = _stream(python_server[1], "stream_crash_process", [-2], expected=3)
    assert [v for v, _ in collected["0"]] == [0, 1]
    [(error, _)] = collected["errors"]
    assert "exited unexpectedly (exit code 5)" in str(error)
    collected = _stream(python_server[1], "stream_crash_process", [1], expected=2, enable_empty_final=True)
    assert collected["0"] == [(0, False), (None, True)]  # the restarted process serves again


def test_http_infer_on_a_decoupled_model_is_501(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        http.infer("repeat_decoupled", _inputs(httpclient, IN=np.array([2], np.int32)))
    assert raised.value.status() == "501"
    assert raised.value.message() == "HTTP end point doesn't support models with decoupled transaction policy"
    with pytest.raises(InferenceServerException) as raised:
        grpc.infer("repeat_decoupled", _inputs(grpcclient, IN=np.array([2], np.int32)))
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "ModelInfer RPC doesn't support models with decoupled transaction policy" in raised.value.message()


def test_non_decoupled_models_answer_once_on_the_stream_with_the_final_flag(
    python_server: tuple[ServerProcess, str],
) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(python_server[1])
    try:
        client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), results))
        client.async_stream_infer("py_errors", _inputs(grpcclient, INPUT0=np.array([4], np.int32)))
        result, error = results.get(timeout=STREAM_TIMEOUT_S)
        assert error is None
        assert result.as_numpy("OUTPUT0").tolist() == [4]
        assert result.get_response().parameters["triton_final_response"].bool_param
    finally:
        client.stop_stream()
        client.close()
