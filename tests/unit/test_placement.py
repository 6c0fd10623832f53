"""Instance placement over a device list: count instances per listed GPU, Triton's errors, NVML's view."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.backends.devices import visible_gpu_count
from modelport.backends.placement import gpu_problems, place_instances
from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.config.spec import InstanceGroupSpec
from modelport.errors import InvalidInput
from modelport.observability.nvml import FakeGpuReader, GpuDevice, visible_devices
from modelport.repository.configure import configure_model
from modelport.repository.source import read_model_folder
from support.models import small_models

GPU_GROUP = InstanceGroupSpec("g", "KIND_GPU", 2, (0, 1))
CPU_GROUP = InstanceGroupSpec("c", "KIND_CPU", 2)


def test_count_instances_go_on_each_listed_gpu() -> None:
    spots = place_instances([GPU_GROUP], cpus=8)
    assert [(p.name, p.device_id) for p in spots] == [("g_0", 0), ("g_1", 0), ("g_2", 1), ("g_3", 1)]


def test_cpu_groups_share_the_cpus_and_follow_gpu_groups_in_order() -> None:
    spots = place_instances([GPU_GROUP, CPU_GROUP], cpus=12)
    assert [(p.group.name, p.index, p.device_id) for p in spots][-2:] == [("c", 4, None), ("c", 5, None)]
    assert {p.threads for p in spots} == {2}  # 12 CPUs over 6 instances


def test_kind_gpu_without_gpus_is_triton_s_load_error() -> None:
    group = InstanceGroupSpec("m_0", "KIND_GPU", 1)
    assert gpu_problems("m", [group], []) == [
        "instance group m_0 of model m has kind KIND_GPU but no GPUs are available"
    ]
    assert gpu_problems("m", [group], [0]) == [
        "instance group m_0 of model m has kind KIND_GPU but specifies no GPUs"
    ]


def test_a_gpu_id_this_machine_lacks_is_named() -> None:
    assert gpu_problems("m", [GPU_GROUP], [0]) == [
        "instance group g of model m specifies invalid or unsupported gpu id 1. GPUs usable here: 0"
    ]
    assert gpu_problems("m", [GPU_GROUP, CPU_GROUP], [0, 1]) == []


def _fake_node() -> tuple[GpuDevice, ...]:
    return FakeGpuReader(
        gpus=(GpuDevice(0, "GPU-aaaa-1"), GpuDevice(1, "GPU-bbbb-2"), GpuDevice(2, "GPU-cccc-3"))
    ).devices()


@pytest.mark.parametrize(
    ("cuda_visible", "shown"),
    [
        (None, [(0, "GPU-aaaa-1"), (1, "GPU-bbbb-2"), (2, "GPU-cccc-3")]),
        ("2,0", [(0, "GPU-cccc-3"), (1, "GPU-aaaa-1")]),
        ("GPU-bbbb", [(0, "GPU-bbbb-2")]),
        ("1,7,2", [(0, "GPU-bbbb-2")]),  # CUDA stops at the first entry naming no device
        ("", []),
        ("-1", []),
    ],
)
def test_cuda_visible_devices_renumbers_as_cuda_does(
    cuda_visible: str | None, shown: list[tuple[int, str]]
) -> None:
    assert [(d.index, d.uuid) for d in visible_devices(_fake_node(), cuda_visible)] == shown


def test_kind_gpu_on_this_machine(tmp_path: Path) -> None:
    """Through configure_model: a KIND_GPU model loads only where NVML shows a GPU the backend can use."""
    model_dir = small_models.write_simple_noconfig(tmp_path)
    (model_dir / "config.pbtxt").write_text("instance_group [ { kind: KIND_GPU count: 2 } ]\n")
    registry = BackendRegistry.with_builtins()
    if registry.get("onnxruntime").usable_gpus() > 0:
        spec = configure_model(read_model_folder(model_dir), ServerSettings(), registry).spec
        assert spec.instance_groups[0].gpus == tuple(range(visible_gpu_count()))
        return
    expected = (
        "instance group simple_noconfig_0 of model simple_noconfig has kind KIND_GPU "
        "but no GPUs are available"
    )
    with pytest.raises(InvalidInput) as refused:
        configure_model(read_model_folder(model_dir), ServerSettings(), registry)
    assert refused.value.message == expected
