"""The shared-memory registry and the codecs reading inputs from it / the core writing outputs to it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from modelport.codecs import grpc_v2, json_v2
from modelport.errors import ErrorCode, ModelportError
from modelport.shm import SharedMemoryRef, SharedMemoryRegistry
from modelport.shm.outputs import output_regions, write_output_regions
from modelport.tensor.records import InferOutput, InferRequest, InferResponse, RequestedOutput

SIZE = 8192


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    seg = shared_memory.SharedMemory(name=f"mp_unit_{uuid.uuid4().hex[:10]}", create=True, size=SIZE)
    try:
        yield seg
    finally:
        seg.close()
        seg.unlink()


@pytest.fixture
def registry() -> Iterator[SharedMemoryRegistry]:
    reg = SharedMemoryRegistry()
    yield reg
    reg.close()


def key(seg: shared_memory.SharedMemory) -> str:
    return "/" + seg.name.lstrip("/")


def code_of(call: object) -> tuple[ErrorCode, str]:
    with pytest.raises(ModelportError) as info:
        call()  # type: ignore[operator]
    return info.value.code, info.value.message


class TestRegistry:
    def test_register_and_status(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        registry.register_system("a", key(segment), 0, 1024)
        registry.register_system("b", key(segment), 5000, 100)  # an unaligned offset is fine
        assert [(r.name, r.offset, r.byte_size) for r in registry.system_status()] == [
            ("a", 0, 1024),
            ("b", 5000, 100),
        ]
        assert registry.system_status("b")[0].to_json() == {
            "name": "b", "key": key(segment), "offset": 5000, "byte_size": 100
        }  # fmt: skip

    def test_register_errors(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        registry.register_system("a", key(segment), 0, 16)
        assert code_of(lambda: registry.register_system("a", key(segment), 0, 16)) == (
            ErrorCode.ALREADY_EXISTS, "shared memory region 'a' already in manager"
        )  # fmt: skip
        assert code_of(lambda: registry.register_system("x", "/mp_unit_missing", 0, 16)) == (
            ErrorCode.INTERNAL, "Unable to open shared memory region: '/mp_unit_missing'"
        )  # fmt: skip
        code, message = code_of(lambda: registry.register_system("x", key(segment), SIZE - 8, 16))
        assert code is ErrorCode.INVALID_ARG and message.startswith(
            "failed to register shared memory region 'x': invalid args"
        )
        assert code_of(lambda: registry.register_system("x", key(segment), 0, 0))[0] is ErrorCode.INVALID_ARG
        assert code_of(lambda: registry.system_status("nope")) == (
            ErrorCode.NOT_FOUND, "Unable to find system shared memory region: 'nope'"
        )  # fmt: skip

    def test_read_and_write_at_offsets(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        segment.buf[4100:4104] = b"abcd"
        registry.register_system("r", key(segment), 4096, 1024)
        assert bytes(registry.read(SharedMemoryRef("r", 4, 4))) == b"abcd"
        assert registry.read(SharedMemoryRef("r", 0, 4)).readonly
        registry.write(SharedMemoryRef("r", 8, 8), b"wxyz", "OUT")
        assert bytes(segment.buf[4104:4108]) == b"wxyz"

    @pytest.mark.parametrize(
        ("ref", "message"),
        [
            (SharedMemoryRef("nope", 0, 4), "Unable to find shared memory region: 'nope'"),
            (SharedMemoryRef("r", 64, 0), "Invalid offset for shared memory region: 'r'"),
            (SharedMemoryRef("r", 60, 8), "Invalid offset + byte size for shared memory region: 'r'"),
        ],
    )
    def test_bounds(
        self,
        registry: SharedMemoryRegistry,
        segment: shared_memory.SharedMemory,
        ref: SharedMemoryRef,
        message: str,
    ) -> None:
        registry.register_system("r", key(segment), 0, 64)
        code, text = code_of(lambda: registry.read(ref))
        assert code is ErrorCode.INVALID_ARG and text.startswith(message)

    def test_write_too_big(self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory) -> None:
        registry.register_system("r", key(segment), 0, 64)
        assert code_of(lambda: registry.write(SharedMemoryRef("r", 0, 4), b"12345", "OUT")) == (
            ErrorCode.INVALID_ARG,
            "shared memory size specified with the request for output 'OUT' (4 bytes) should be at least "
            "5 bytes to hold the results",
        )

    def test_unregister_while_an_array_still_views_the_region(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        segment.buf[:4] = np.array([7], np.int32).tobytes()
        registry.register_system("r", key(segment), 0, 64)
        array = np.frombuffer(registry.read(SharedMemoryRef("r", 0, 4)), np.int32)
        registry.unregister_system()  # must not fail while a request still holds a view
        assert registry.system_status() == []
        assert array.tolist() == [7]  # the mapping lives until the last view goes away

    def test_cuda_is_refused_without_a_device(self, segment: shared_memory.SharedMemory) -> None:
        registry = SharedMemoryRegistry(cuda=lambda: None)
        code, message = code_of(lambda: registry.register_cuda("g", b"\0" * 64, 0, 64))
        assert code is ErrorCode.INVALID_ARG and "this server has no CUDA device" in message
        assert registry.cuda_status() == []
        assert code_of(lambda: registry.cuda_status("g"))[0] is ErrorCode.NOT_FOUND
        registry.register_system("s", key(segment), 0, 64)
        missing = "Unable to find cuda shared memory region: 's'"
        assert code_of(lambda: registry.cuda_status("s"))[1] == missing
        registry.unregister_cuda()
        assert [r.name for r in registry.system_status()] == ["s"]  # a CUDA unregister leaves it


class TestCodecs:
    def test_grpc_input_from_region(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        segment.buf[16:32] = np.arange(4, dtype=np.float32).tobytes()
        registry.register_system("r", key(segment), 0, 64)
        tensor = service_pb2.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=[1, 4])
        tensor.parameters["shared_memory_region"].string_param = "r"
        tensor.parameters["shared_memory_offset"].int64_param = 16
        tensor.parameters["shared_memory_byte_size"].int64_param = 16
        other = service_pb2.ModelInferRequest.InferInputTensor(name="Y", datatype="INT8", shape=[1])
        msg = service_pb2.ModelInferRequest(
            model_name="m", inputs=[tensor, other], raw_input_contents=[b"\x05"]
        )
        x, y = grpc_v2.decode_request(msg, registry).inputs
        assert x.data.tolist() == [[0.0, 1.0, 2.0, 3.0]] and x.parameters == {}
        assert y.data.tolist() == [5]  # raw contents go to the inputs that are not in shared memory

    def test_grpc_contents_with_region(self, registry: SharedMemoryRegistry) -> None:
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name="X",
            datatype="FP32",
            shape=[1],
            contents=service_pb2.InferTensorContents(fp32_contents=[1.0]),
        )
        tensor.parameters["shared_memory_region"].string_param = "r"
        tensor.parameters["shared_memory_byte_size"].int64_param = 4
        with pytest.raises(ModelportError, match="unexpected 'content' provided when using shared memory"):
            grpc_v2.decode_request(service_pb2.ModelInferRequest(model_name="m", inputs=[tensor]), registry)

    def test_json_input_and_output_in_regions(
        self, registry: SharedMemoryRegistry, segment: shared_memory.SharedMemory
    ) -> None:
        segment.buf[:8] = np.array([1, 2], np.int32).tobytes()
        registry.register_system("r", key(segment), 0, 64)
        body = (
            b'{"inputs":[{"name":"X","datatype":"INT32","shape":[2],"parameters":'
            b'{"shared_memory_region":"r","shared_memory_byte_size":8}}],'
            b'"outputs":[{"name":"Y","parameters":{"shared_memory_region":"r","shared_memory_offset":32,'
            b'"shared_memory_byte_size":32}}]}'
        )
        request = json_v2.decode_request(body, None, "m", shm=registry)
        assert request.inputs[0].data.tolist() == [1, 2]
        regions = output_regions(registry, request)
        response = InferResponse(
            "m", "1", outputs=[InferOutput("Y", "INT32", (2,), np.array([3, 4], np.int32))]
        )
        write_output_regions(registry, response, regions)
        assert np.frombuffer(bytes(segment.buf[32:40]), np.int32).tolist() == [3, 4]
        payload, header_length = json_v2.encode_response(response, request)
        assert header_length is None
        # As Triton: the output names what was written, without `parameters` or data.
        doc = json.loads(payload)
        assert doc["outputs"] == [{"name": "Y", "datatype": "INT32", "shape": [2]}]

    def test_output_region_checked_before_inference(self, registry: SharedMemoryRegistry) -> None:
        request = InferRequest(
            "m",
            outputs=[
                RequestedOutput(
                    "Y", parameters={"shared_memory_region": "gone", "shared_memory_byte_size": 4}
                )
            ],
        )
        with pytest.raises(ModelportError, match="Unable to find shared memory region: 'gone'"):
            output_regions(registry, request)
