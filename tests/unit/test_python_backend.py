"""The Python backend without a server: pb_utils, in-thread execution, auto-complete, torch-less loading."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import triton_python_backend_utils as pb_utils
from modelport.backends.base import InstancePlacement
from modelport.backends.python.backend import PythonBackend, initialize_args
from modelport.backends.python.inthread import InThreadPythonInstance
from modelport.backends.python.runner import ResponseChannel, Result
from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.config.spec import InstanceGroupSpec, ModelSpec
from modelport.errors import ErrorCode, InvalidInput, ModelportError, ModelUnavailable
from modelport.repository.configure import configure_model
from modelport.repository.source import read_model_folder
from modelport.tensor.records import InferInput, InferRequest, RequestedOutput

IDENTITY_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 3 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 3 ] }} ]
"""

# Keeps what execute saw and returned, so the test can check that nothing was copied.
RECORDING_MODEL = """
import triton_python_backend_utils as pb_utils

SEEN = []

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = data * 2
            SEEN.append((data, out, request.requested_output_names(), request.parameters()))
            if data[0, 0] < 0:
                error = pb_utils.TritonError("negative", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
"""


def _model_dir(root: Path, name: str, code: str, config: str | None = IDENTITY_CONFIG) -> Path:
    model_dir = root / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(textwrap.dedent(code), encoding="utf-8")
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config.format(name=name), encoding="utf-8")
    return model_dir


def _spec(model_dir: Path) -> ModelSpec:
    return configure_model(
        read_model_folder(model_dir), ServerSettings(), BackendRegistry.with_builtins()
    ).spec


def _placement(spec: ModelSpec) -> InstancePlacement:
    group: InstanceGroupSpec = spec.instance_groups[0]
    return InstancePlacement(group, 0, None, 1)


def _request(data: np.ndarray, **parameters: object) -> InferRequest:
    request = InferRequest(
        "m", inputs=[InferInput("INPUT0", "FP32", data.shape, data)], parameters=dict(parameters)
    )
    request.batch_size = data.shape[0]
    return request


class TestInThread:
    def test_execute_sees_views_and_returns_the_models_arrays(self, tmp_path: Path) -> None:
        model_dir = _model_dir(tmp_path, "rec", RECORDING_MODEL)
        spec = _spec(model_dir)
        instance = PythonBackend().create_instance(spec, model_dir / "1" / "model.py", _placement(spec))
        assert isinstance(instance, InThreadPythonInstance)
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        request = _request(data, custom="x", priority=1, triton_secret=True)
        [result] = instance.execute([request]).results
        seen_input, produced, requested, parameters = sys.modules[_module_of(instance)].SEEN[-1]
        assert seen_input is data or np.shares_memory(seen_input, data)  # a view, not a copy
        assert isinstance(result, dict) and result["OUTPUT0"] is produced  # returned as is
        assert requested == ["OUTPUT0"]
        assert json.loads(parameters) == {"custom": "x"}  # Triton's own keys are not shown
        instance.close()

    def test_requested_outputs_and_response_errors(self, tmp_path: Path) -> None:
        model_dir = _model_dir(tmp_path, "rec2", RECORDING_MODEL)
        spec = _spec(model_dir)
        instance = PythonBackend().create_instance(spec, model_dir / "1" / "model.py", _placement(spec))
        ok = _request(np.ones((1, 3), np.float32))
        ok.outputs = [RequestedOutput("OUTPUT0")]
        bad = _request(-np.ones((1, 3), np.float32))
        first, second = instance.execute([ok, bad]).results
        assert isinstance(first, dict)
        np.testing.assert_array_equal(first["OUTPUT0"], np.full((1, 3), 2, np.float32))
        assert isinstance(second, ModelportError)
        assert second.code is ErrorCode.INVALID_ARG and second.message == "negative"
        instance.close()

    def test_wrong_number_of_responses_fails_every_request(self, tmp_path: Path) -> None:
        code = """
        class TritonPythonModel:
            def execute(self, requests):
                return []
        """
        model_dir = _model_dir(tmp_path, "short", code)
        spec = _spec(model_dir)
        instance = PythonBackend().create_instance(spec, model_dir / "1" / "model.py", _placement(spec))
        results = instance.execute([_request(np.ones((1, 3), np.float32))] * 2).results
        assert all(isinstance(r, ModelportError) for r in results)
        assert "InferenceRequest(s) size is:2, and InferenceResponse(s) size is:0" in results[0].message  # type: ignore[union-attr]

    def test_initialize_args(self, tmp_path: Path) -> None:
        model_dir = _model_dir(tmp_path, "argsmodel", RECORDING_MODEL)
        spec = _spec(model_dir)
        args = initialize_args(spec, model_dir / "1" / "model.py", _placement(spec))
        assert json.loads(args["model_config"])["name"] == "argsmodel"
        assert args["model_instance_kind"] == "CPU"
        assert args["model_instance_name"] == "argsmodel_0"
        assert args["model_repository"] == str(model_dir)
        assert args["model_version"] == "1"
        assert all(isinstance(v, str) for v in args.values())

    def test_unknown_isolation_value_is_rejected(self, tmp_path: Path) -> None:
        config = (
            IDENTITY_CONFIG + 'parameters {{ key: "MODELPORT_ISOLATION" value {{ string_value: "vm" }} }}\n'
        )
        model_dir = _model_dir(tmp_path, "iso", RECORDING_MODEL, config)
        with pytest.raises(InvalidInput, match="MODELPORT_ISOLATION"):
            _spec(model_dir)


def _module_of(instance: InThreadPythonInstance) -> str:
    return instance._runner._module_name  # the test reads the model module's SEEN list


class TestAutoComplete:
    def test_auto_complete_config_completes_a_missing_config(self, tmp_path: Path) -> None:
        code = """
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            @staticmethod
            def auto_complete_config(config):
                config.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [2]})
                config.add_output({"name": "OUT", "data_type": "TYPE_INT32", "dims": [2]})
                config.set_max_batch_size(8)
                config.set_dynamic_batching()
                config.set_model_transaction_policy({"decoupled": False})
                return config

            def execute(self, requests):
                return []
        """
        spec = _spec(_model_dir(tmp_path, "auto", code, config=None))
        assert spec.backend == "python"
        assert spec.max_batch_size == 8
        assert [(t.name, t.datatype.name, t.dims) for t in spec.inputs] == [("IN", "INT32", (2,))]
        assert [(t.name, t.datatype.name, t.dims) for t in spec.outputs] == [("OUT", "INT32", (2,))]
        assert spec.dynamic_batching is not None and spec.dynamic_batching.preferred_batch_sizes == (8,)
        assert spec.instance_groups[0].count == 1

    def test_a_failing_auto_complete_is_a_load_error(self, tmp_path: Path) -> None:
        code = """
        class TritonPythonModel:
            @staticmethod
            def auto_complete_config(config):
                config.set_max_batch_size(2)
                return config

            def execute(self, requests):
                return []
        """
        config = IDENTITY_CONFIG.replace("max_batch_size: 4", "max_batch_size: 16")
        with pytest.raises(ModelportError, match="configuration specified max_batch_size 16"):
            _spec(_model_dir(tmp_path, "autofail", code, config))


class TestPbUtils:
    def test_model_config_helpers_follow_triton(self) -> None:
        config = pb_utils.ModelConfig(
            json.dumps(
                {
                    "name": "m",
                    "max_batch_size": 0,
                    "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [4]}],
                    "output": [],
                }
            )
        )
        config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [4]})  # same: fine
        with pytest.raises(ValueError, match="expects datatype TYPE_FP32"):
            config.add_input({"name": "A", "data_type": "TYPE_INT32", "dims": [4]})
        with pytest.raises(ValueError, match="expects dims"):
            config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [5]})
        with pytest.raises(ValueError, match="contains property other than"):
            config.add_output({"name": "B", "data_type": "TYPE_FP32", "dims": [1], "format": "x"})
        config.set_max_batch_size(4)
        with pytest.raises(ValueError, match="configuration specified max_batch_size 4"):
            config.set_max_batch_size(2)
        config.as_dict()["sequence_batching"] = {}
        with pytest.raises(ValueError, match="sequence_batching"):
            config.set_dynamic_batching()

    def test_tensors(self) -> None:
        with pytest.raises(pb_utils.TritonModelException, match=r"np\.object_"):
            pb_utils.Tensor("S", np.array(["text"]))
        array = np.arange(4, dtype=np.int32)
        tensor = pb_utils.Tensor("X", array)
        assert tensor.name() == "X" and tensor.as_numpy() is array and tensor.is_cpu()
        back = pb_utils.Tensor.from_dlpack("Y", tensor.as_numpy())
        assert np.shares_memory(back.as_numpy(), array)
        assert pb_utils.triton_string_to_numpy("TYPE_FP16") is np.float16
        assert pb_utils.numpy_to_triton_type(np.float32) == 11
        assert pb_utils.triton_to_numpy_type(13) is np.object_

    def test_bytes_serialisation_round_trips(self) -> None:
        values = np.array([b"a", "b\u00e9", b""], dtype=np.object_)
        encoded = pb_utils.serialize_byte_tensor(values)
        assert encoded is not None
        assert pb_utils.deserialize_bytes_tensor(encoded).tolist() == [b"a", "b\u00e9".encode(), b""]

    def test_errors_and_lookups(self) -> None:
        error = pb_utils.TritonError("nope", pb_utils.TritonError.NOT_FOUND)
        assert (error.message(), error.code()) == ("nope", pb_utils.TritonError.NOT_FOUND)
        assert pb_utils.TritonError("x").code() == pb_utils.TritonError.INTERNAL
        response = pb_utils.InferenceResponse([pb_utils.Tensor("A", np.zeros(1))])
        assert pb_utils.get_output_tensor_by_name(response, "A") is not None
        assert pb_utils.get_output_tensor_by_name(response, "B") is None
        config = {"input": [{"name": "I"}], "output": [{"name": "O"}]}
        assert pb_utils.get_input_config_by_name(config, "I") == {"name": "I"}
        assert pb_utils.get_output_config_by_name(config, "X") is None
        with pytest.raises(pb_utils.TritonModelException):
            pb_utils.InferenceRequest(
                model_name="m", requested_output_names=[], inputs=[]
            ).get_response_sender()

    def test_bls_outside_a_server_explains_itself(self) -> None:
        pb_utils._bind_runtime(None)
        saved = list(pb_utils._process_runtime)
        pb_utils._process_runtime.clear()
        try:
            with pytest.raises(pb_utils.TritonModelException, match="not running inside a modelport server"):
                pb_utils.InferenceRequest(model_name="m", requested_output_names=[], inputs=[]).exec()
        finally:
            pb_utils._process_runtime[:] = saved


class _Collect(ResponseChannel):
    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[tuple[Result | None, bool]] = []

    def _deliver(self, result: Result | None, final: bool) -> None:
        self.delivered.append((result, final))


class TestResponseChannel:
    def test_send_after_final_raises_and_drop_closes(self) -> None:
        channel = _Collect()
        sender = pb_utils.InferenceResponseSender(channel)
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("A", np.ones(1))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        with pytest.raises(pb_utils.TritonModelException, match="closed"):
            sender.send(pb_utils.InferenceResponse([]))
        assert [final for _, final in channel.delivered] == [False, True]

        forgotten = _Collect()
        delivered = forgotten.delivered
        del forgotten  # a sender dropped without FINAL still ends its request
        assert delivered == [(None, True)]


class TestPyTorchWithoutTorch:
    def test_missing_torch_is_a_clear_unavailable_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from modelport.backends.pytorch.backend import import_torch

        monkeypatch.setitem(sys.modules, "torch", None)
        with pytest.raises(ModelUnavailable, match=r"pip install modelport\[torch\]"):
            import_torch()
