"""Health, server and model metadata, and model config, through tritonclient.http."""

from __future__ import annotations

import httpx
import tritonclient.http as httpclient

from modelport import __version__
from support.assertions import expect_error
from support.models import NUMERIC_TYPES, identity_model_name


class TestHealth:
    def test_live(self, client: httpclient.InferenceServerClient) -> None:
        assert client.is_server_live() is True

    def test_not_ready_while_a_model_is_broken(
        self, client: httpclient.InferenceServerClient, raw: httpx.Client
    ) -> None:
        assert client.is_server_ready() is False
        response = raw.get("/v2/health/ready")
        assert response.status_code == 400
        assert response.content == b""

    def test_live_has_an_empty_body(self, raw: httpx.Client) -> None:
        response = raw.get("/v2/health/live")
        assert response.status_code == 200
        assert response.content == b""

    def test_ready_with_only_healthy_models(
        self, healthy_client: httpclient.InferenceServerClient, healthy_raw: httpx.Client
    ) -> None:
        assert healthy_client.is_server_live() is True
        assert healthy_client.is_server_ready() is True
        response = healthy_raw.get("/v2/health/ready")
        assert response.status_code == 200
        assert response.content == b""

    def test_model_ready(self, client: httpclient.InferenceServerClient) -> None:
        assert client.is_model_ready("add_sub") is True
        assert client.is_model_ready("add_versions", "1") is True
        assert client.is_model_ready("add_versions", "2") is True
        assert client.is_model_ready("add_versions", "3") is False
        assert client.is_model_ready("broken_onnx") is False
        assert client.is_model_ready("broken_config") is False
        assert client.is_model_ready("nosuch") is False

    def test_model_not_ready_body(self, raw: httpx.Client) -> None:
        for path in (
            "/v2/models/broken_onnx/ready",
            "/v2/models/nosuch/ready",
            "/v2/models/add_sub/versions/5/ready",
        ):
            response = raw.get(path)
            assert response.status_code == 400, path
            assert response.json() == {"error": "Model version not ready"}


class TestServerMetadata:
    def test_metadata(self, client: httpclient.InferenceServerClient) -> None:
        metadata = client.get_server_metadata()
        assert metadata["name"] == "modelport"
        assert metadata["version"] == __version__
        extensions = metadata["extensions"]
        assert isinstance(extensions, list)
        for extension in (
            "classification",
            "model_repository",
            "model_configuration",
            "binary_tensor_data",
            "parameters",
        ):
            assert extension in extensions


class TestModelMetadata:
    def test_batching_model_has_a_leading_minus_one(self, client: httpclient.InferenceServerClient) -> None:
        assert client.get_model_metadata("add_sub") == {
            "name": "add_sub",
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]},
                {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 16]},
            ],
            "outputs": [
                {"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 16]},
                {"name": "OUTPUT1", "datatype": "FP32", "shape": [-1, 16]},
            ],
        }

    def test_non_batching_model_shapes_are_the_dims(self, client: httpclient.InferenceServerClient) -> None:
        metadata = client.get_model_metadata("nobatch")
        assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 3]}]
        assert metadata["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 3]}]

    def test_versions_are_strings(self, client: httpclient.InferenceServerClient) -> None:
        assert client.get_model_metadata("add_versions")["versions"] == ["1", "2"]
        assert client.get_model_metadata("add_versions", "1")["versions"] == ["1", "2"]

    def test_no_config_model(self, client: httpclient.InferenceServerClient) -> None:
        metadata = client.get_model_metadata("simple_noconfig")
        assert metadata["platform"] == "onnxruntime_onnx"
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def test_bytes_and_numeric_datatypes(self, client: httpclient.InferenceServerClient) -> None:
        assert client.get_model_metadata("string_identity")["inputs"][0]["datatype"] == "BYTES"
        for datatype in NUMERIC_TYPES:
            metadata = client.get_model_metadata(identity_model_name(datatype))
            assert metadata["inputs"] == [{"name": "INPUT0", "datatype": datatype, "shape": [-1, -1]}]

    def test_reshape_model_reports_config_dims(self, client: httpclient.InferenceServerClient) -> None:
        metadata = client.get_model_metadata("reshape")
        assert [i["shape"] for i in metadata["inputs"]] == [[-1, 1], [-1, 2, 3]]
        assert [o["shape"] for o in metadata["outputs"]] == [[-1, 1], [-1, 2, 3]]

    def test_unknown_model(self, client: httpclient.InferenceServerClient) -> None:
        expect_error(
            lambda: client.get_model_metadata("nosuch"),
            404,
            "Request for unknown model: 'nosuch' is not found",
        )

    def test_unknown_version(self, client: httpclient.InferenceServerClient) -> None:
        expect_error(
            lambda: client.get_model_metadata("add_versions", "3"),
            404,
            "Request for unknown model: 'add_versions' version 3 is not found",
        )


class TestModelConfig:
    def test_auto_completed_config(self, client: httpclient.InferenceServerClient) -> None:
        config = client.get_model_config("simple_noconfig")
        assert config["name"] == "simple_noconfig"
        assert config["platform"] == "onnxruntime_onnx"
        assert config["backend"] == "onnxruntime"
        assert config["max_batch_size"] == 4
        assert config["dynamic_batching"]["preferred_batch_size"] == [4]
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0
        assert config["version_policy"] == {"latest": {"num_versions": 1}}
        assert config["default_model_filename"] == "model.onnx"
        (group,) = config["instance_group"]
        assert group["name"] == "simple_noconfig"
        assert group["kind"] == "KIND_CPU"
        assert group["count"] == 2
        assert group["gpus"] == []
        (inp,) = config["input"]
        assert inp["name"] == "x"
        assert inp["data_type"] == "TYPE_FP32"
        assert inp["dims"] == [4]
        assert inp["format"] == "FORMAT_NONE"
        assert config["output"][0]["dims"] == [4]

    def test_every_default_field_is_printed(self, client: httpclient.InferenceServerClient) -> None:
        config = client.get_model_config("add_sub")
        for key in (
            "runtime",
            "batch_input",
            "batch_output",
            "optimization",
            "cc_model_filenames",
            "metric_tags",
            "parameters",
            "model_warmup",
        ):
            assert key in config
        assert config["optimization"]["input_pinned_memory"] == {"enable": True}
        assert config["optimization"]["priority"] == "PRIORITY_DEFAULT"
        assert config["input"][0]["is_shape_tensor"] is False
        assert "sequence_batching" not in config
        assert "model_transaction_policy" not in config

    def test_normalised_config_file(self, client: httpclient.InferenceServerClient) -> None:
        config = client.get_model_config("add_sub")
        assert config["max_batch_size"] == 8
        assert config["dynamic_batching"]["preferred_batch_size"] == [8]
        assert [(g["name"], g["kind"], g["count"]) for g in config["instance_group"]] == [
            ("add_sub", "KIND_CPU", 2)
        ]

    def test_unnamed_instance_group_gets_model_index(self, client: httpclient.InferenceServerClient) -> None:
        config = client.get_model_config("classifier")
        assert [(g["name"], g["count"]) for g in config["instance_group"]] == [("classifier_0", 1)]
        assert config["output"][0]["label_filename"] == "labels.txt"
        assert "dynamic_batching" not in config  # complete config: auto-complete skipped

    def test_reshape_and_numbers(self, client: httpclient.InferenceServerClient) -> None:
        config = client.get_model_config("reshape")
        assert config["input"][0]["reshape"] == {"shape": []}
        assert config["input"][1]["reshape"] == {"shape": [6]}
        assert config["input"][1]["dims"] == [2, 3]

    def test_versioned_config(self, client: httpclient.InferenceServerClient) -> None:
        assert client.get_model_config("add_versions", "2")["version_policy"] == {"all": {}}

    def test_unknown_model(self, client: httpclient.InferenceServerClient) -> None:
        expect_error(
            lambda: client.get_model_config("nosuch"), 404, "Request for unknown model: 'nosuch' is not found"
        )
