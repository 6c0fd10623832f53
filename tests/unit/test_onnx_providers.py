"""Execution providers from a model config: Triton's TensorRT keys, CUDA options, OpenVINO, refusals."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from modelport.backends.base import InstancePlacement
from modelport.backends.onnxruntime.backend import provider_plan, session_options
from modelport.backends.onnxruntime.providers import (
    CPU,
    CUDA,
    OPENVINO,
    TENSORRT,
    Accelerator,
    Placement,
    plan_providers,
)
from modelport.config.model_config import parse_pbtxt
from modelport.config.spec import InstanceGroupSpec, build_spec
from modelport.errors import ErrorCode, InvalidInput, ModelportError, ModelUnavailable

GPU_BUILD = (TENSORRT, CUDA, CPU)


def _gpu(tmp_path: Path, available: tuple[str, ...] = GPU_BUILD, device: int | None = 1) -> Placement:
    return Placement("m", "m_0", device, available, tmp_path)


def test_a_cpu_instance_runs_on_the_cpu_provider(tmp_path: Path) -> None:
    plan = plan_providers(_gpu(tmp_path, device=None), {})
    assert plan.providers == (CPU,) and plan.warnings == ()


def test_a_gpu_instance_gets_cuda_on_its_device_before_the_cpu(tmp_path: Path) -> None:
    plan = plan_providers(_gpu(tmp_path), {})
    assert plan.providers == ((CUDA, {"device_id": "1"}), CPU)


def test_tensorrt_keys_map_to_the_trt_provider_options(tmp_path: Path) -> None:
    trt = Accelerator("tensorrt", {
        "precision_mode": "FP16", "max_workspace_size_bytes": "1073741824", "trt_engine_cache_enable": "true",
        "trt_engine_cache_path": "trt_cache", "int8_calibration_table_name": "calib.flatbuffers",
        "trt_builder_optimization_level": "3", "trt_dump_subgraphs": "0",
    })  # fmt: skip
    plan = plan_providers(_gpu(tmp_path), {}, (trt,))
    assert plan.names == (TENSORRT, CUDA, CPU)
    assert plan.providers[0] == (TENSORRT, {
        "trt_fp16_enable": "1", "trt_max_workspace_size": "1073741824", "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str((tmp_path / "trt_cache").resolve()),
        "trt_int8_calibration_table_name": "calib.flatbuffers", "trt_builder_optimization_level": "3",
        "trt_dump_subgraphs": "0", "device_id": "1",
    })  # fmt: skip


@pytest.mark.parametrize(("mode", "flag"), [("INT8", "trt_int8_enable"), ("BF16", "trt_bf16_enable")])
def test_precision_modes(tmp_path: Path, mode: str, flag: str) -> None:
    plan = plan_providers(_gpu(tmp_path), {}, (Accelerator("tensorrt", {"precision_mode": mode}),))
    assert plan.providers[0] == (TENSORRT, {flag: "1", "device_id": "1"})


def test_fp32_sets_no_precision_flag(tmp_path: Path) -> None:
    plan = plan_providers(_gpu(tmp_path), {}, (Accelerator("tensorrt", {"precision_mode": "FP32"}),))
    assert plan.providers[0] == (TENSORRT, {"device_id": "1"})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"precision_mode": "FP8"}, "unsupported precision mode 'FP8' is requested"),
        ({"trt_fancy": "1"}, "unknown parameter 'trt_fancy' is provided for TensorRT Execution Accelerator"),
        ({"trt_engine_cache_enable": "yes"}, "failed to convert trt_engine_cache_enable 'yes' to boolean"),
        ({"trt_min_subgraph_size": "x"}, "failed to convert trt_min_subgraph_size 'x' to integral number"),
        ({"max_workspace_size_bytes": "-1"}, "failed to convert max_workspace_size_bytes '-1' to unsigned"),
        ({"trt_engine_cache_path": "/var/cache/trt"}, "TensorRT parameter 'trt_engine_cache_path' must be"),
        ({"trt_timing_cache_path": "../../elsewhere"}, "TensorRT parameter 'trt_timing_cache_path' must be"),
    ],
)
def test_bad_tensorrt_parameters_are_refused_with_triton_messages(
    tmp_path: Path, parameters: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match="^" + message.replace("(", r"\(")):
        plan_providers(_gpu(tmp_path), {}, (Accelerator("tensorrt", parameters),))


def test_an_unknown_accelerator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^unknown Execution Accelerator 'tvm' is requested$"):
        plan_providers(_gpu(tmp_path), {}, (Accelerator("tvm", {}),))
    with pytest.raises(InvalidInput, match=r"^unknown Execution Accelerator 'dnnl' is requested$"):
        plan_providers(_gpu(tmp_path, device=None), {}, (), (Accelerator("dnnl", {}),))


def test_cuda_options_from_parameters_and_the_cuda_accelerator(tmp_path: Path) -> None:
    parameters = {"cudnn_conv_algo_search": "1", "gpu_mem_limit": "4294967200", "arena_extend_strategy": "1",
                  "do_copy_in_default_stream": "false", "intra_op_thread_count": "2"}  # fmt: skip
    cuda = Accelerator("cuda", {"cudnn_conv_use_max_workspace": "0", "use_ep_level_unified_stream": "TRUE"})
    plan = plan_providers(_gpu(tmp_path), parameters, (cuda,))
    assert plan.providers == ((CUDA, {
        "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": "4294967200",
        "arena_extend_strategy": "kSameAsRequested", "do_copy_in_default_stream": "0",
        "cudnn_conv_use_max_workspace": "0", "use_ep_level_unified_stream": "1", "device_id": "1",
    }), CPU)  # fmt: skip


def test_bad_cuda_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^unsupported cudnn_conv_algo_search value '7' is requested$"):
        plan_providers(_gpu(tmp_path), {"cudnn_conv_algo_search": "7"})


def test_a_build_without_the_gpu_providers_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(
        ModelUnavailable, match="asks for KIND_GPU, but the installed onnxruntime has no CUDA"
    ):
        plan_providers(_gpu(tmp_path, available=(CPU,)), {})
    no_trt = _gpu(tmp_path, available=(CUDA, CPU))
    with pytest.raises(
        ModelUnavailable, match=r"'tensorrt' execution accelerator, but .* no TensorrtExecution"
    ):
        plan_providers(no_trt, {}, (Accelerator("tensorrt", {}),))


def test_openvino_is_used_where_present_and_warned_about_where_not(tmp_path: Path) -> None:
    openvino = (Accelerator("openvino", {}),)
    present = plan_providers(_gpu(tmp_path, available=(OPENVINO, CPU), device=None), {}, (), openvino)
    assert present.providers == ((OPENVINO, {"device_type": "CPU"}), CPU) and present.warnings == ()
    absent = plan_providers(_gpu(tmp_path, available=(CPU,), device=None), {}, (), openvino)
    assert absent.providers == (CPU,)
    assert absent.warnings == (
        "model 'm': the 'openvino' execution accelerator is ignored: this onnxruntime has no OpenVINO "
        "execution provider; instance group 'm_0' runs on ONNX Runtime's CPU provider (same results)",
    )


def test_gpu_accelerators_on_a_cpu_instance_are_named_in_a_warning(tmp_path: Path) -> None:
    plan = plan_providers(_gpu(tmp_path, device=None), {}, (Accelerator("tensorrt", {}),))
    assert plan.providers == (CPU,)
    assert plan.warnings == (
        "model 'm': gpu_execution_accelerator 'tensorrt' is not used by instance group 'm_0': "
        "it runs on the CPU",
    )


CONFIG = """name: "m" backend: "onnxruntime" max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
parameters { key: "gpu_mem_limit" value: { string_value: "1000000" } }
optimization { execution_accelerators { gpu_execution_accelerator [ {
  name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }
"""


def test_the_backend_reads_the_config_and_this_onnxruntime(tmp_path: Path) -> None:
    """Through the backend: the config's blocks reach the plan, and this machine's onnxruntime decides."""
    spec = build_spec(parse_pbtxt(CONFIG, "config.pbtxt"), tmp_path)
    group = InstanceGroupSpec("m_0", "KIND_GPU", 1, (0,))
    gpu = InstancePlacement(group, 0, 0, 1)
    session_options(spec, gpu)
    if TENSORRT in ort.get_available_providers():
        plan = provider_plan(spec, gpu, tmp_path)
        assert plan.names == (TENSORRT, CUDA, CPU)
        assert plan.providers[1] == (CUDA, {"gpu_mem_limit": "1000000", "device_id": "0"})
    else:
        with pytest.raises(ModelportError) as refused:
            provider_plan(spec, gpu, tmp_path)
        assert refused.value.code is ErrorCode.UNAVAILABLE
