"""Backend detection and the defaults Triton applies to every config (normalisation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config.completion import apply_defaults, resolve_backend
from modelport.config.model_config import parse_pbtxt
from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto, model_config_pb2

KIND = model_config_pb2.ModelInstanceGroup


def _version_dirs(root: Path, files: dict[str, str]) -> list[Path]:
    """Create <root>/<version>/<file> for each entry; returns the version dirs."""
    dirs = []
    for version, filename in files.items():
        d = root / version
        d.mkdir(parents=True, exist_ok=True)
        if filename:
            (d / filename).write_bytes(b"")
        dirs.append(d)
    return dirs


class TestResolveBackend:
    @pytest.mark.parametrize(
        ("filename", "backend", "platform"),
        [
            ("model.onnx", "onnxruntime", "onnxruntime_onnx"),
            ("model.pt", "pytorch", "pytorch_libtorch"),
            ("model.plan", "tensorrt", "tensorrt_plan"),
            ("model.py", "python", ""),
        ],
    )
    def test_detected_from_the_model_file(
        self, tmp_path: Path, filename: str, backend: str, platform: str
    ) -> None:
        config = ModelConfigProto(name="m")
        resolve_backend(config, tmp_path, _version_dirs(tmp_path, {"1": filename}))
        assert config.backend == backend
        assert config.platform == platform
        assert config.default_model_filename == filename

    def test_detection_looks_in_the_lexicographically_first_version_dir(self, tmp_path: Path) -> None:
        # "10" sorts before "2", as in Triton.
        dirs = _version_dirs(tmp_path, {"2": "model.onnx", "10": "model.py"})
        config = ModelConfigProto(name="m")
        resolve_backend(config, tmp_path, dirs)
        assert config.backend == "python"

    def test_platform_fills_backend(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", platform="onnxruntime_onnx")
        resolve_backend(config, tmp_path, [])
        assert config.backend == "onnxruntime"
        assert config.default_model_filename == "model.onnx"

    def test_libtorch_alias(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", platform="libtorch")
        resolve_backend(config, tmp_path, [])
        assert config.backend == "pytorch"

    def test_backend_fills_platform(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", backend="onnxruntime")
        resolve_backend(config, tmp_path, [])
        assert config.platform == "onnxruntime_onnx"

    def test_python_backend_keeps_an_empty_platform(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", backend="python")
        resolve_backend(config, tmp_path, [])
        assert config.platform == ""
        assert config.default_model_filename == "model.py"

    def test_default_model_filename_is_kept(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", backend="onnxruntime", default_model_filename="net.onnx")
        resolve_backend(config, tmp_path, [])
        assert config.default_model_filename == "net.onnx"

    def test_custom_backend_gets_model_dot_backend(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", backend="mybackend")
        resolve_backend(config, tmp_path, [])
        assert config.default_model_filename == "model.mybackend"

    def test_ensemble_is_left_alone(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="m", platform="ensemble")
        resolve_backend(config, tmp_path, [])
        assert config.backend == ""
        assert config.default_model_filename == ""

    def test_undetectable_backend_is_invalid_arg(self, tmp_path: Path) -> None:
        config = ModelConfigProto(name="mystery")
        with pytest.raises(InvalidInput, match="Could not determine backend for model 'mystery'"):
            resolve_backend(config, tmp_path, _version_dirs(tmp_path, {"1": "weights.bin"}))


class TestApplyDefaults:
    def test_version_policy_defaults_to_latest_one(self) -> None:
        config = ModelConfigProto(name="m", backend="onnxruntime")
        apply_defaults(config, gpu_count=0)
        assert config.version_policy.WhichOneof("policy_choice") == "latest"
        assert config.version_policy.latest.num_versions == 1

    def test_explicit_version_policy_is_kept(self) -> None:
        config = parse_pbtxt('name: "m" backend: "onnxruntime" version_policy: { all: {} }', "cfg")
        apply_defaults(config, gpu_count=0)
        assert config.version_policy.WhichOneof("policy_choice") == "all"

    def test_preferred_batch_size_defaults_to_max_batch_size(self) -> None:
        config = parse_pbtxt('name: "m" backend: "onnxruntime" max_batch_size: 8 dynamic_batching {}', "cfg")
        apply_defaults(config, gpu_count=0)
        assert list(config.dynamic_batching.preferred_batch_size) == [8]

    def test_explicit_preferred_batch_sizes_are_kept(self) -> None:
        config = parse_pbtxt(
            'name: "m" backend: "onnxruntime" max_batch_size: 8 '
            "dynamic_batching { preferred_batch_size: [2, 4] }",
            "cfg",
        )
        apply_defaults(config, gpu_count=0)
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]

    def test_no_dynamic_batching_is_not_added(self) -> None:
        config = parse_pbtxt('name: "m" backend: "onnxruntime" max_batch_size: 8', "cfg")
        apply_defaults(config, gpu_count=0)
        assert not config.HasField("dynamic_batching")

    def test_pinned_memory_defaults_on(self) -> None:
        config = ModelConfigProto(name="m", backend="onnxruntime")
        apply_defaults(config, gpu_count=0)
        assert config.optimization.input_pinned_memory.enable is True
        assert config.optimization.output_pinned_memory.enable is True

    def test_default_instance_group_is_named_after_the_model_with_two_cpu_instances(self) -> None:
        config = ModelConfigProto(name="dyn", backend="onnxruntime")
        apply_defaults(config, gpu_count=0)
        assert len(config.instance_group) == 1
        group = config.instance_group[0]
        assert group.name == "dyn"
        assert group.kind == KIND.KIND_CPU
        assert group.count == 2

    def test_unnamed_groups_are_named_model_index(self) -> None:
        config = parse_pbtxt(
            'name: "dyn" backend: "onnxruntime" '
            'instance_group [ { kind: KIND_CPU }, { name: "mine" count: 3 }, { count: 1 } ]',
            "cfg",
        )
        apply_defaults(config, gpu_count=0)
        assert [g.name for g in config.instance_group] == ["dyn_0", "mine", "dyn_2"]
        assert [g.count for g in config.instance_group] == [2, 3, 1]

    def test_count_defaults_to_one_for_other_backends(self) -> None:
        config = ModelConfigProto(name="p", backend="python")
        apply_defaults(config, gpu_count=0)
        assert config.instance_group[0].count == 1
        assert config.instance_group[0].kind == KIND.KIND_CPU

    def test_kind_auto_becomes_gpu_when_gpus_exist(self) -> None:
        config = ModelConfigProto(name="m", backend="onnxruntime")
        apply_defaults(config, gpu_count=2)
        group = config.instance_group[0]
        assert group.kind == KIND.KIND_GPU
        assert group.count == 1
        assert list(group.gpus) == [0, 1]

    def test_kind_auto_with_missing_gpu_falls_back_to_cpu(self) -> None:
        config = parse_pbtxt('name: "m" backend: "onnxruntime" instance_group [ { gpus: [ 3 ] } ]', "cfg")
        apply_defaults(config, gpu_count=1)
        assert config.instance_group[0].kind == KIND.KIND_CPU

    def test_ensemble_gets_no_instance_group(self) -> None:
        config = ModelConfigProto(name="e", platform="ensemble")
        apply_defaults(config, gpu_count=0)
        assert len(config.instance_group) == 0
