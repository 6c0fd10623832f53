"""Repository scanning, version policies, and building a model's config from its folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from onnx import TensorProto

from modelport.backends.registry import BackendRegistry
from modelport.config.settings import ServerSettings
from modelport.config.spec import VersionPolicySpec
from modelport.errors import InvalidInput
from modelport.repository.configure import configure_model
from modelport.repository.source import parse_version, read_model_folder, scan_repositories
from modelport.repository.version_policy import select_versions
from support.models import identity_graph, small_models, write_classifier, write_onnx


class TestSelectVersions:
    def test_latest_one_is_the_largest(self) -> None:
        assert select_versions("m", VersionPolicySpec("latest", num_versions=1), [3, 1, 10, 2]) == [10]

    def test_latest_n_is_numeric_not_lexicographic(self) -> None:
        assert select_versions("m", VersionPolicySpec("latest", num_versions=2), [1, 2, 9, 10]) == [9, 10]

    def test_latest_n_larger_than_available(self) -> None:
        assert select_versions("m", VersionPolicySpec("latest", num_versions=5), [2, 1]) == [1, 2]

    def test_all(self) -> None:
        assert select_versions("m", VersionPolicySpec("all"), [3, 1, 2]) == [1, 2, 3]

    def test_specific_skips_missing_versions_with_an_error_log(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.ERROR, logger="modelport"):
            chosen = select_versions("m", VersionPolicySpec("specific", versions=(1, 3, 7)), [1, 2, 3])
        assert chosen == [1, 3]
        assert "[7]" in caplog.text

    def test_version_zero_is_a_version(self) -> None:
        assert select_versions("m", VersionPolicySpec("all"), [0, 1]) == [0, 1]

    @pytest.mark.parametrize(
        ("policy", "available"),
        [
            (VersionPolicySpec("specific", versions=(4,)), [1, 2]),
            (VersionPolicySpec("latest", num_versions=1), []),
            (VersionPolicySpec("all"), []),
        ],
    )
    def test_empty_selection_fails(self, policy: VersionPolicySpec, available: list[int]) -> None:
        with pytest.raises(
            InvalidInput, match="at least one version must be available under the version policy of model 'm'"
        ):
            select_versions("m", policy, available)


class TestParseVersion:
    @pytest.mark.parametrize(
        ("name", "expected"), [("1", 1), ("0", 0), ("10", 10), ("123456789012", 123456789012)]
    )
    def test_numbers(self, name: str, expected: int) -> None:
        assert parse_version(name) == expected

    @pytest.mark.parametrize("name", ["010", "00", "v1", "1a", "-1", "", " 1", "1.0", "+1"])
    def test_non_versions(self, name: str) -> None:
        assert parse_version(name) is None


class TestScan:
    def _model(self, root: Path, name: str, versions: list[str]) -> Path:
        for v in versions:
            (root / name / v).mkdir(parents=True)
        (root / name).mkdir(parents=True, exist_ok=True)
        return root / name

    def test_versions_hidden_and_special_folders(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        model = self._model(
            tmp_path, "m", ["1", "2", "0", "010", "abc", ".3", "warmup", "configs", "initial_state"]
        )
        (model / "4").write_text("a file, not a folder")
        with caplog.at_level(logging.WARNING, logger="modelport"):
            folder = read_model_folder(model)
        assert sorted(folder.versions) == [0, 1, 2]
        assert folder.versions[2] == model / "2"
        assert folder.config_path == model / "config.pbtxt"
        assert "'010'" in caplog.text and "'abc'" in caplog.text
        assert "warmup" not in caplog.text and ".3" not in caplog.text

    def test_hidden_model_folders_and_files_are_ignored(self, tmp_path: Path) -> None:
        self._model(tmp_path, "a", ["1"])
        self._model(tmp_path, ".hidden", ["1"])
        (tmp_path / "README.md").write_text("not a model")
        assert sorted(scan_repositories((tmp_path,))) == ["a"]

    def test_models_from_several_roots(self, tmp_path: Path) -> None:
        self._model(tmp_path / "r1", "a", ["1"])
        self._model(tmp_path / "r2", "b", ["1"])
        found = scan_repositories((tmp_path / "r1", tmp_path / "r2"))
        assert sorted(found) == ["a", "b"]
        assert found["b"].path == tmp_path / "r2" / "b"

    def test_duplicate_names_across_roots_are_skipped(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        self._model(tmp_path / "r1", "dup", ["1"])
        self._model(tmp_path / "r1", "only1", ["1"])
        self._model(tmp_path / "r2", "dup", ["2"])
        with caplog.at_level(logging.WARNING, logger="modelport"):
            found = scan_repositories((tmp_path / "r1", tmp_path / "r2"))
        assert sorted(found) == ["only1"]
        assert "not unique across all model repositories" in caplog.text


class TestConfigureModel:
    REGISTRY = BackendRegistry.with_builtins()

    def _configure(self, model_dir: Path, settings: ServerSettings | None = None):  # type: ignore[no-untyped-def]
        return configure_model(read_model_folder(model_dir), settings or ServerSettings(), self.REGISTRY)

    def test_no_config_model_is_completed_like_triton(self, tmp_path: Path) -> None:
        spec = self._configure(small_models.write_simple_noconfig(tmp_path)).spec
        assert spec.name == "simple_noconfig"
        assert spec.platform == "onnxruntime_onnx"
        assert spec.backend == "onnxruntime"
        assert spec.max_batch_size == 4
        assert spec.dynamic_batching is not None
        assert spec.dynamic_batching.preferred_batch_sizes == (4,)
        assert [(g.name, g.kind, g.count) for g in spec.instance_groups] == [
            ("simple_noconfig", "KIND_CPU", 2)
        ]
        assert [(t.name, t.datatype.name, t.dims) for t in spec.inputs] == [("x", "FP32", (4,))]
        assert [(t.name, t.datatype.name, t.dims) for t in spec.outputs] == [("y", "FP32", (4,))]
        assert spec.default_model_filename == "model.onnx"
        assert spec.version_policy == VersionPolicySpec("latest", num_versions=1)
        assert spec.metadata_platform == "onnxruntime_onnx"

    def test_kind_auto_takes_gpus_only_where_the_backend_can_use_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A GPU node whose onnxruntime has no CUDA provider serves on the CPU (it failed to load)."""
        from modelport.backends.onnxruntime import backend as ort_backend

        monkeypatch.setattr(ort_backend, "visible_gpu_count", lambda: 2)  # a node with two GPUs
        monkeypatch.setattr(ort_backend.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
        model_dir = small_models.write_simple_noconfig(tmp_path)
        spec = self._configure(model_dir).spec
        assert [(g.kind, g.count, g.gpus) for g in spec.instance_groups] == [("KIND_CPU", 2, ())]
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        monkeypatch.setattr(ort_backend.ort, "get_available_providers", lambda: providers)
        spec = self._configure(model_dir).spec
        assert [(g.kind, g.count, g.gpus) for g in spec.instance_groups] == [("KIND_GPU", 1, (0, 1))]

    def test_backend_config_reaches_auto_complete(self, tmp_path: Path) -> None:
        settings = ServerSettings(backend_config={"onnxruntime": {"default-max-batch-size": "16"}})
        spec = self._configure(small_models.write_simple_noconfig(tmp_path), settings).spec
        assert spec.max_batch_size == 16

    def test_strict_mode_needs_a_config_file(self, tmp_path: Path) -> None:
        settings = ServerSettings(auto_complete_config=False)
        with pytest.raises(InvalidInput, match=r"simple_noconfig.*auto-complete is disabled"):
            self._configure(small_models.write_simple_noconfig(tmp_path), settings)

    def test_strict_mode_does_not_complete_a_partial_config(self, tmp_path: Path) -> None:
        model_dir = tmp_path / "partial"
        write_onnx(model_dir / "1" / "model.onnx", identity_graph(TensorProto.FLOAT, ["batch", 4]))
        (model_dir / "config.pbtxt").write_text('backend: "onnxruntime"\n')
        spec = self._configure(model_dir, ServerSettings(auto_complete_config=False)).spec
        assert spec.max_batch_size == 0
        assert spec.inputs == ()
        assert spec.dynamic_batching is None

    def test_config_name_must_match_the_folder(self, tmp_path: Path) -> None:
        model_dir = small_models.write_add_sub(tmp_path)
        renamed = model_dir.rename(tmp_path / "other")
        with pytest.raises(InvalidInput) as info:
            self._configure(renamed)
        assert info.value.message == (
            "unexpected directory name 'other' for model 'add_sub', directory name must equal model name"
        )

    def test_missing_name_is_the_folder_name(self, tmp_path: Path) -> None:
        model_dir = small_models.write_add_sub(tmp_path)
        config = model_dir / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "add_sub"\n', ""))
        assert self._configure(model_dir).spec.name == "add_sub"

    def test_parse_error_names_the_config_file(self, tmp_path: Path) -> None:
        model_dir = small_models.write_add_sub(tmp_path)
        (model_dir / "config.pbtxt").write_text("max_batch_size: [")
        with pytest.raises(InvalidInput) as info:
            self._configure(model_dir)
        assert "'add_sub/config.pbtxt'" in info.value.message  # named as in the repository
        assert str(tmp_path) not in info.value.message  # never the server's own path

    def test_labels_are_read(self, tmp_path: Path) -> None:
        configured = self._configure(write_classifier(tmp_path))
        assert configured.labels["OUTPUT0"][:2] == ["zero", "one"]
        assert "RAW" not in configured.labels

    def test_missing_labels_file_is_an_error(self, tmp_path: Path) -> None:
        model_dir = write_classifier(tmp_path)
        (model_dir / "labels.txt").unlink()
        with pytest.raises(InvalidInput, match=r"labels\.txt"):
            self._configure(model_dir)

    def test_version_policy_from_config(self, tmp_path: Path) -> None:
        spec = self._configure(small_models.write_add_versions(tmp_path)).spec
        assert spec.version_policy.kind == "all"
