"""Inference through tritonclient.http: every datatype, JSON and binary, classification, versions,
request ids, output subsets and compression."""

from __future__ import annotations

import gzip
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from support.models import CLASSIFIER_LABELS, NUMERIC_TYPES, identity_model_name

RNG = np.random.default_rng(1234)


def sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Values that span the datatype, including its extremes."""
    _, dtype = NUMERIC_TYPES[datatype]
    if dtype == np.bool_:
        return RNG.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        flat = values.reshape(-1)
        flat[0], flat[-1] = info.min, info.max
        return values
    values = RNG.normal(size=shape).astype(dtype)
    flat = values.reshape(-1)
    flat[0] = np.finfo(dtype).max
    flat[-1] = np.finfo(dtype).tiny
    return values


def identity(
    client: httpclient.InferenceServerClient,
    datatype: str,
    data: np.ndarray,
    binary_in: bool,
    binary_out: bool,
) -> httpclient.InferResult:
    inp = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)
    return client.infer(identity_model_name(datatype), [inp], outputs=[out])


def fp32_input(name: str, data: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    inp = httpclient.InferInput(name, list(data.shape), "FP32")
    inp.set_data_from_numpy(data.astype(np.float32), binary_data=binary)
    return inp


def add_sub_inputs(
    batch: int = 2, binary: bool = True
) -> tuple[list[httpclient.InferInput], np.ndarray, np.ndarray]:
    a = RNG.normal(size=(batch, 16)).astype(np.float32)
    b = RNG.normal(size=(batch, 16)).astype(np.float32)
    return [fp32_input("INPUT0", a, binary), fp32_input("INPUT1", b, binary)], a, b


class TestDatatypes:
    @pytest.mark.parametrize("datatype", list(NUMERIC_TYPES))
    def test_binary_round_trip(self, client: httpclient.InferenceServerClient, datatype: str) -> None:
        data = sample(datatype, (3, 5))
        result = identity(client, datatype, data, binary_in=True, binary_out=True)
        output = result.as_numpy("OUTPUT0")
        assert output.dtype == data.dtype
        np.testing.assert_array_equal(output, data)
        assert result.get_output("OUTPUT0")["datatype"] == datatype
        assert result.get_output("OUTPUT0")["shape"] == [3, 5]

    @pytest.mark.parametrize("datatype", [d for d in NUMERIC_TYPES if d != "FP16"])
    def test_json_round_trip(self, client: httpclient.InferenceServerClient, datatype: str) -> None:
        data = sample(datatype, (2, 4))
        result = identity(client, datatype, data, binary_in=False, binary_out=False)
        output_json = result.get_output("OUTPUT0")
        assert "data" in output_json and "parameters" not in output_json
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    @pytest.mark.parametrize("datatype", ["INT64", "UINT64", "FP64", "BOOL"])
    def test_json_in_binary_out_and_back(
        self, client: httpclient.InferenceServerClient, datatype: str
    ) -> None:
        data = sample(datatype, (1, 6))
        for binary_in, binary_out in ((False, True), (True, False)):
            result = identity(client, datatype, data, binary_in=binary_in, binary_out=binary_out)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    def test_fp16_binary_in_binary_out(self, client: httpclient.InferenceServerClient) -> None:
        data = np.array([[0.5, -2.0, 65504.0, 6.1e-5]], dtype=np.float16)
        np.testing.assert_array_equal(identity(client, "FP16", data, True, True).as_numpy("OUTPUT0"), data)

    def test_zero_sized_tensor(self, client: httpclient.InferenceServerClient) -> None:
        data = np.zeros((2, 0), dtype=np.float32)
        result = identity(client, "FP32", data, binary_in=True, binary_out=True)
        assert result.as_numpy("OUTPUT0").shape == (2, 0)

    def test_large_binary_tensor(self, client: httpclient.InferenceServerClient) -> None:
        data = RNG.normal(size=(8, 100_000)).astype(np.float32)  # 3.2 MB
        np.testing.assert_array_equal(identity(client, "FP32", data, True, True).as_numpy("OUTPUT0"), data)


class TestBytes:
    WORDS = ["héllo wörld", "日本語テキスト", "", "emoji \U0001f600", "plain"]

    def _infer(
        self, client: httpclient.InferenceServerClient, binary_in: bool, binary_out: bool
    ) -> np.ndarray:
        data = np.array([[w.encode("utf-8")] for w in self.WORDS], dtype=np.object_)
        inp = httpclient.InferInput("INPUT0", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data, binary_data=binary_in)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)
        result = client.infer("string_identity", [inp], outputs=[out])
        assert result.get_output("OUTPUT0")["datatype"] == "BYTES"
        output = result.as_numpy("OUTPUT0")
        assert output.shape == (len(self.WORDS), 1)
        return output

    @pytest.mark.parametrize("binary_in", [True, False])
    def test_binary_output_is_bytes(self, client: httpclient.InferenceServerClient, binary_in: bool) -> None:
        output = self._infer(client, binary_in, binary_out=True)
        assert [row[0] for row in output] == [w.encode("utf-8") for w in self.WORDS]

    @pytest.mark.parametrize("binary_in", [True, False])
    def test_json_output_is_text(self, client: httpclient.InferenceServerClient, binary_in: bool) -> None:
        output = self._infer(client, binary_in, binary_out=False)
        assert [row[0] for row in output] == self.WORDS


class TestOutputs:
    def test_all_outputs_binary_by_default(self, client: httpclient.InferenceServerClient) -> None:
        inputs, a, b = add_sub_inputs()
        result = client.infer("add_sub", inputs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
        for name in ("OUTPUT0", "OUTPUT1"):
            assert result.get_output(name)["parameters"] == {"binary_data_size": 2 * 16 * 4}

    def test_requested_subset(self, client: httpclient.InferenceServerClient) -> None:
        inputs, a, b = add_sub_inputs()
        result = client.infer("add_sub", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
        assert result.get_output("OUTPUT0") is None
        assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)

    def test_mixed_json_and_binary_outputs(self, client: httpclient.InferenceServerClient) -> None:
        inputs, a, b = add_sub_inputs(binary=False)
        outputs = [
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=False),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=True),
        ]
        result = client.infer("add_sub", inputs, outputs=outputs)
        assert "data" in result.get_output("OUTPUT0")
        assert "binary_data_size" in result.get_output("OUTPUT1")["parameters"]
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)

    def test_full_batch(self, client: httpclient.InferenceServerClient) -> None:
        inputs, a, b = add_sub_inputs(batch=8)
        np.testing.assert_allclose(client.infer("add_sub", inputs).as_numpy("OUTPUT0"), a + b, rtol=1e-6)

    def test_no_config_model(self, client: httpclient.InferenceServerClient) -> None:
        x = RNG.normal(size=(4, 4)).astype(np.float32)
        result = client.infer("simple_noconfig", [fp32_input("x", x)])
        np.testing.assert_allclose(result.as_numpy("y"), 2 * x, rtol=1e-6)

    def test_non_batching_model(self, client: httpclient.InferenceServerClient) -> None:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        result = client.infer("nobatch", [fp32_input("INPUT0", x)])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * x)

    def test_reshape_model(self, client: httpclient.InferenceServerClient) -> None:
        scalars = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
        matrices = np.arange(18, dtype=np.float32).reshape(3, 2, 3)
        result = client.infer("reshape", [fp32_input("INPUT0", scalars), fp32_input("INPUT1", matrices)])
        out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
        assert out0.shape == (3, 1) and out1.shape == (3, 2, 3)
        np.testing.assert_array_equal(out0, scalars + 1)
        np.testing.assert_array_equal(out1, matrices * 2)


class TestRequestFields:
    def test_request_id_is_echoed(self, client: httpclient.InferenceServerClient) -> None:
        inputs, _, _ = add_sub_inputs()
        assert client.infer("add_sub", inputs, request_id="req-42").get_response()["id"] == "req-42"

    def test_no_id_when_none_was_sent(self, client: httpclient.InferenceServerClient) -> None:
        inputs, _, _ = add_sub_inputs()
        response = client.infer("add_sub", inputs).get_response()
        assert "id" not in response
        assert response["model_name"] == "add_sub"
        assert response["model_version"] == "1"

    def test_custom_and_sequence_parameters_are_accepted(
        self, client: httpclient.InferenceServerClient
    ) -> None:
        inputs, a, b = add_sub_inputs()
        result = client.infer(
            "add_sub",
            inputs,
            sequence_id=5,
            sequence_start=True,
            priority=1,
            timeout=10_000_000,
            parameters={"my_param": "x", "my_int": 3, "my_bool": True},
        )
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)


class TestVersions:
    X = np.arange(8, dtype=np.float32).reshape(2, 4)

    @pytest.mark.parametrize(
        ("version", "served", "added"), [("1", "1", 1.0), ("2", "2", 2.0), ("", "2", 2.0)]
    )
    def test_version_routing(
        self, client: httpclient.InferenceServerClient, version: str, served: str, added: float
    ) -> None:
        result = client.infer("add_versions", [fp32_input("INPUT0", self.X)], model_version=version)
        assert result.get_response()["model_version"] == served
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), self.X + added)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class TestClassification:
    # Distinct values, so the top-k order is unambiguous.
    X = np.array([np.arange(10), np.arange(10)[::-1] * 0.5], dtype=np.float32)

    def _expected(self, k: int) -> list[list[bytes]]:
        probs = softmax(self.X.astype(np.float64)).astype(np.float32)
        rows = []
        for row in probs:
            top = np.argsort(-row)[:k]
            rows.append([f"{float(row[i]):f}:{i}:{CLASSIFIER_LABELS[i]}".encode() for i in top])
        return rows

    @pytest.mark.parametrize("binary", [True, False])
    def test_top_k_with_labels(self, client: httpclient.InferenceServerClient, binary: bool) -> None:
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=3)
        result = client.infer("classifier", [fp32_input("INPUT0", self.X)], outputs=[out])
        meta = result.get_output("OUTPUT0")
        assert meta["datatype"] == "BYTES"
        assert meta["shape"] == [2, 3]
        got = result.as_numpy("OUTPUT0")
        assert got.shape == (2, 3)
        as_bytes = [[v if isinstance(v, bytes) else v.encode() for v in row] for row in got]
        assert as_bytes == self._expected(3)
        assert as_bytes[0][0].endswith(b":9:nine")
        assert as_bytes[1][0].endswith(b":0:zero")

    def test_output_without_labels(self, client: httpclient.InferenceServerClient) -> None:
        out = httpclient.InferRequestedOutput("RAW", class_count=2)
        got = client.infer("classifier", [fp32_input("INPUT0", self.X)], outputs=[out]).as_numpy("RAW")
        assert got.tolist() == [[b"9.000000:9", b"8.000000:8"], [b"4.500000:0", b"4.000000:1"]]

    def test_classification_beside_a_plain_output(self, client: httpclient.InferenceServerClient) -> None:
        outputs = [
            httpclient.InferRequestedOutput("OUTPUT0", class_count=1),
            httpclient.InferRequestedOutput("RAW"),
        ]
        result = client.infer("classifier", [fp32_input("INPUT0", self.X)], outputs=outputs)
        assert result.as_numpy("OUTPUT0").shape == (2, 1)
        np.testing.assert_array_equal(result.as_numpy("RAW"), self.X)

    def test_k_larger_than_classes(self, client: httpclient.InferenceServerClient) -> None:
        out = httpclient.InferRequestedOutput("OUTPUT0", class_count=50)
        assert client.infer("classifier", [fp32_input("INPUT0", self.X)], outputs=[out]).as_numpy(
            "OUTPUT0"
        ).shape == (2, 10)

    def test_integer_output(self, client: httpclient.InferenceServerClient) -> None:
        data = np.array([[5, -1, 9, 2]], dtype=np.int32)
        inp = httpclient.InferInput("INPUT0", [1, 4], "INT32")
        inp.set_data_from_numpy(data)
        out = httpclient.InferRequestedOutput("OUTPUT0", class_count=2)
        assert client.infer("identity_int32", [inp], outputs=[out]).as_numpy("OUTPUT0").tolist() == [
            [b"9:2", b"5:0"]
        ]

    def test_non_batching_model_shape_is_k(self, client: httpclient.InferenceServerClient) -> None:
        x = np.array([[1, 6, 3], [4, 5, 2]], dtype=np.float32)
        out = httpclient.InferRequestedOutput("OUTPUT0", class_count=2)
        got = client.infer("nobatch", [fp32_input("INPUT0", x)], outputs=[out]).as_numpy("OUTPUT0")
        assert got.tolist() == [b"12.000000:1", b"10.000000:4"]


class TestCompression:
    @pytest.mark.parametrize("request_algorithm", [None, "gzip", "deflate"])
    @pytest.mark.parametrize("response_algorithm", [None, "gzip", "deflate"])
    def test_tritonclient_compression(
        self,
        client: httpclient.InferenceServerClient,
        request_algorithm: str | None,
        response_algorithm: str | None,
    ) -> None:
        inputs, a, b = add_sub_inputs(batch=4)
        result = client.infer(
            "add_sub",
            inputs,
            request_compression_algorithm=request_algorithm,
            response_compression_algorithm=response_algorithm,
        )
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)

    def test_compressed_response_keeps_the_uncompressed_header_length(self, raw: httpx.Client) -> None:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "datatype": "FP32",
                        "shape": [2, 4],
                        "parameters": {"binary_data_size": x.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        response = raw.post(
            "/v2/models/add_versions/versions/1/infer",
            content=gzip.compress(header + x.tobytes()),
            headers={
                "Content-Encoding": "gzip",
                "Accept-Encoding": "gzip",
                "Inference-Header-Content-Length": str(len(header)),
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-type"] == "application/octet-stream"
        body = response.content  # httpx has already inflated it
        json_length = int(response.headers["inference-header-content-length"])
        doc = json.loads(body[:json_length])
        assert doc["outputs"][0]["parameters"] == {"binary_data_size": x.nbytes}
        np.testing.assert_array_equal(
            np.frombuffer(body[json_length:], dtype=np.float32).reshape(2, 4), x + 1
        )

    def test_plain_json_response_has_no_header_length(self, raw: httpx.Client) -> None:
        body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        response = raw.post(
            "/v2/models/add_versions/infer", json=body, headers={"Accept-Encoding": "identity"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert "inference-header-content-length" not in response.headers
        assert "content-encoding" not in response.headers
        assert response.json()["outputs"] == [
            {"name": "OUTPUT0", "datatype": "FP32", "shape": [1, 4], "data": [3.0, 4.0, 5.0, 6.0]}
        ]


def test_raw_binary_request(raw: httpx.Client) -> None:
    x = np.arange(4, dtype=np.float32)
    response = raw.post(
        "/v2/models/simple_noconfig/infer",
        content=x.tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    assert response.status_code == 200, response.text
    json_length = int(response.headers["inference-header-content-length"])
    doc = json.loads(response.content[:json_length])
    assert doc["outputs"][0]["shape"] == [1, 4]
    np.testing.assert_array_equal(np.frombuffer(response.content[json_length:], dtype=np.float32), 2 * x)
