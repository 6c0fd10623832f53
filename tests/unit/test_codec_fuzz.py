"""Property-based fuzzing of what clients control: the codecs and the repository API's paths.

Whatever a client sends, decoding and validating it either gives a request or raises a
ModelportError whose code is a client mistake (never a crash, never another exception type), and
no override path leaves the model folder. Bounded for `make test`; MODELPORT_FUZZ_EXAMPLES raises
the count for a longer run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.codecs import grpc_v2, json_v2
from modelport.errors import ErrorCode, ModelportError
from modelport.protocol import service_pb2 as pb
from modelport.repository import overrides
from modelport.scheduling.normalize import normalize_request
from modelport.tensor.bytes_codec import decode_bytes
from modelport.testing.fakes import spec_from_pbtxt

EXAMPLES = int(os.environ.get("MODELPORT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("MODELPORT_FUZZ_EXAMPLES"),  # the same examples in every CI run
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture
    ],
)
CLIENT_CODES = {ErrorCode.INVALID_ARG, ErrorCode.NOT_FOUND, ErrorCode.UNSUPPORTED, ErrorCode.ALREADY_EXISTS}

SPEC = spec_from_pbtxt(
    """
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ 2 ] optional: true }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
)
DATATYPES = ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16", "X"]
NAMES = st.sampled_from(["INPUT0", "TEXT", "OUTPUT0", "", "nope", "INPUT0\n"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)
SHAPES = st.lists(st.one_of(st.integers(-3, 9), st.integers(2**31, 2**63), st.text(max_size=2)), max_size=6)


def assert_client_error(exc: ModelportError) -> None:
    assert exc.code in CLIENT_CODES, f"{exc.code}: {exc.message}"


def json_input() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": NAMES, "datatype": st.sampled_from(DATATYPES), "shape": SHAPES},
        optional={
            "data": JSON_VALUES,
            "parameters": st.dictionaries(
                st.sampled_from(["binary_data_size", "shared_memory_region", "x"]), SCALARS, max_size=2
            ),
        },
    )


def decode_and_validate(body: bytes, header_length: int | None) -> None:
    try:
        request = json_v2.decode_request(body, header_length, "echo")
        normalize_request(request, SPEC)
    except ModelportError as exc:
        assert_client_error(exc)


@FUZZ
@given(
    doc=st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(json_input(), max_size=3), JSON_VALUES)},
        optional={"id": SCALARS, "parameters": JSON_VALUES, "outputs": JSON_VALUES},
    )
)
def test_json_requests_decode_or_answer_a_client_error(doc: dict[str, Any]) -> None:
    decode_and_validate(json.dumps(doc, allow_nan=True).encode(), None)


@FUZZ
@given(body=st.binary(max_size=300), header_length=st.one_of(st.none(), st.integers(-5, 400)))
def test_arbitrary_bodies_answer_a_client_error(body: bytes, header_length: int | None) -> None:
    decode_and_validate(body, header_length)


@FUZZ
@given(
    inputs=st.lists(json_input(), min_size=1, max_size=2),
    tail=st.binary(max_size=200),
    sizes=st.lists(st.integers(-4, 300), min_size=1, max_size=2),
)
def test_binary_extension_requests_decode_or_answer_a_client_error(
    inputs: list[dict[str, Any]], tail: bytes, sizes: list[int]
) -> None:
    for item, size in zip(inputs, sizes, strict=False):
        item.pop("data", None)
        item["parameters"] = {"binary_data_size": size}
    header = json.dumps({"inputs": inputs}).encode()
    decode_and_validate(header + tail, len(header))


@FUZZ
@given(buffer=st.binary(max_size=200), count=st.one_of(st.none(), st.integers(0, 50)))
def test_bytes_tensors_decode_or_answer_a_client_error(buffer: bytes, count: int | None) -> None:
    try:
        decoded = decode_bytes(buffer, count)
    except ModelportError as exc:
        assert_client_error(exc)
        return
    assert decoded.dtype == np.object_
    if count is not None:
        assert decoded.size == count


@st.composite
def grpc_requests(draw: st.DrawFn) -> Any:
    msg = pb.ModelInferRequest(model_name="echo", id=draw(st.text(max_size=5)))
    for _ in range(draw(st.integers(0, 3))):
        tensor = msg.inputs.add()
        tensor.name = draw(NAMES)
        tensor.datatype = draw(st.sampled_from(DATATYPES))
        tensor.shape.extend(draw(st.lists(st.integers(-3, 2**62), max_size=5)))
        kind = draw(st.sampled_from(["raw", "fp32", "bytes", "int64", "none"]))
        if kind == "raw":
            msg.raw_input_contents.append(draw(st.binary(max_size=64)))
        elif kind == "fp32":
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
        elif kind == "bytes":
            tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=6), max_size=4)))
        elif kind == "int64":
            values = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)
            tensor.contents.int64_contents.extend(draw(values))
        if draw(st.booleans()):
            tensor.parameters["shared_memory_region"].string_param = draw(st.text(max_size=4))
    if draw(st.booleans()):
        msg.raw_input_contents.append(draw(st.binary(max_size=16)))  # one too many, or one unclaimed
    for key in draw(st.lists(st.sampled_from(["priority", "timeout", "sequence_id", "x"]), max_size=2)):
        msg.parameters[key].int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    return msg


@FUZZ
@given(msg=grpc_requests())
def test_grpc_requests_decode_or_answer_a_client_error(msg: Any) -> None:
    try:
        request = grpc_v2.decode_request(msg)
        normalize_request(request, SPEC)
    except ModelportError as exc:
        assert_client_error(exc)


@FUZZ
@given(
    name=st.text(max_size=12),
    keys=st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(["file:1/model.py", "file:../x", "/etc/x", "file:1/../../x", "1/./a", "C:x"]),
        ),
        max_size=3,
    ),
)
@pytest.mark.usefixtures("override_root")
def test_override_files_never_leave_the_model_folder(name: str, keys: list[str]) -> None:
    if not overrides.is_plain_name(name):
        assert name in ("", ".", "..") or any(c in name for c in "/\\\x00")
        return
    try:
        root, folder = overrides.materialize(name, None, dict.fromkeys(keys, b"x"))
    except ModelportError as exc:
        assert_client_error(exc)
        return
    except OSError:
        return  # a name the file system refuses (too long, not encodable): nothing was written
    try:
        for path in root.rglob("*"):
            assert path.resolve().is_relative_to(folder.path.resolve()) or path == folder.path
    finally:
        overrides.discard(root)


@pytest.fixture
def override_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Override copies go under this test's own temp folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path
