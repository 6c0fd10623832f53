"""The system shared-memory extension over HTTP and gRPC, driven by tritonclient.utils.shared_memory:
register/status/unregister, inputs read from regions, outputs written to regions, bounds checks, and
CUDA shared memory refused on a server without CUDA IPC."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from integration.grpc_support import (
    build_grpc_repository,
    mobilenet_available,
    running_grpc_server,
)
from modelport.shm.cuda import open_cuda_ipc
from support.server import ServerProcess

PROTOCOLS = ["grpc", "http"]
# protocol -> the status each error class shows up as
STATUS = {
    "grpc": {
        "invalid": "StatusCode.INVALID_ARGUMENT",
        "not_found": "StatusCode.NOT_FOUND",
        "exists": "StatusCode.ALREADY_EXISTS",
        "internal": "StatusCode.INTERNAL",
        "unsupported": "StatusCode.UNIMPLEMENTED",
    },
    "http": {"invalid": "400", "not_found": "404", "exists": "400", "internal": "500", "unsupported": "501"},
}
RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def shm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_grpc_repository(tmp_path_factory.mktemp("shm_repo"), with_mobilenet=True)
    log = tmp_path_factory.mktemp("shm_logs") / "server.log"
    with running_grpc_server(repo, log) as proc:
        yield proc


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(shm_server: ServerProcess, protocol: str) -> Iterator[Any]:
    if protocol == "grpc":
        c: Any = grpcclient.InferenceServerClient(shm_server.grpc_url)
    else:
        c = httpclient.InferenceServerClient(shm_server.http_url, network_timeout=60.0)
    c.unregister_system_shared_memory()
    yield c
    c.unregister_system_shared_memory()
    c.close()


@pytest.fixture
def regions() -> Iterator[Callable[[int], tuple[str, str, Any]]]:
    """Makes POSIX regions with unique names and keys; all are destroyed after the test."""
    handles: list[Any] = []

    def make(byte_size: int) -> tuple[str, str, Any]:
        token = uuid.uuid4().hex[:12]
        name, key = f"region_{token}", f"/modelport_test_{token}"
        handles.append(shm.create_shared_memory_region(name, key, byte_size, create_only=True))
        return name, key, handles[-1]

    yield make
    for handle in handles:
        shm.destroy_shared_memory_region(handle)


def module_of(protocol: str) -> Any:
    return grpcclient if protocol == "grpc" else httpclient


def shm_input(
    protocol: str, name: str, shape: list[int], datatype: str, region: str, size: int, offset: int = 0
) -> Any:
    inp = module_of(protocol).InferInput(name, shape, datatype)
    inp.set_shared_memory(region, size, offset=offset)
    return inp


def shm_output(protocol: str, name: str, region: str, size: int, offset: int = 0) -> Any:
    out = module_of(protocol).InferRequestedOutput(name)
    out.set_shared_memory(region, size, offset=offset)
    return out


def data_input(protocol: str, name: str, data: np.ndarray, datatype: str = "FP32") -> Any:
    inp = module_of(protocol).InferInput(name, list(data.shape), datatype)
    inp.set_data_from_numpy(data)
    return inp


def expect_error(
    call: Callable[[], Any], protocol: str, kind: str, fragment: str
) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == STATUS[protocol][kind], info.value.message()
    assert fragment in (info.value.message() or ""), info.value.message()
    return info.value


def status_list(client: Any, protocol: str, name: str = "") -> list[dict[str, Any]]:
    """Region status as a list of dicts, whatever the protocol."""
    if protocol == "http":
        return list(client.get_system_shared_memory_status(region_name=name))
    regions = client.get_system_shared_memory_status(region_name=name).regions
    return sorted(
        (
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in regions.values()
        ),
        key=lambda r: r["name"],
    )


# --- registry -------------------------------------------------------------------------------------
def test_register_status_unregister(client: Any, protocol: str, regions: Any) -> None:
    name_a, key_a, _ = regions(256)
    name_b, key_b, _ = regions(4096)
    assert status_list(client, protocol) == []
    client.register_system_shared_memory(name_a, key_a, 256)
    client.register_system_shared_memory(name_b, key_b, 1024, offset=2048)
    listed = sorted(status_list(client, protocol), key=lambda r: r["name"])
    assert listed == sorted(
        [
            {"name": name_a, "key": key_a, "offset": 0, "byte_size": 256},
            {"name": name_b, "key": key_b, "offset": 2048, "byte_size": 1024},
        ],
        key=lambda r: r["name"],
    )
    assert status_list(client, protocol, name_b) == [
        {"name": name_b, "key": key_b, "offset": 2048, "byte_size": 1024}
    ]
    client.unregister_system_shared_memory(name_a)
    assert [r["name"] for r in status_list(client, protocol)] == [name_b]
    client.unregister_system_shared_memory("never_registered")  # unknown names are fine
    client.unregister_system_shared_memory()
    assert status_list(client, protocol) == []


def test_status_of_unknown_region(client: Any, protocol: str) -> None:
    expect_error(
        lambda: client.get_system_shared_memory_status(region_name="nope"),
        protocol,
        "not_found",
        "Unable to find system shared memory region: 'nope'",
    )


def test_register_twice(client: Any, protocol: str, regions: Any) -> None:
    name, key, _ = regions(64)
    client.register_system_shared_memory(name, key, 64)
    expect_error(
        lambda: client.register_system_shared_memory(name, key, 64),
        protocol,
        "exists",
        f"shared memory region '{name}' already in manager",
    )


def test_register_unknown_key(client: Any, protocol: str) -> None:
    expect_error(
        lambda: client.register_system_shared_memory("ghost", "/modelport_no_such_key", 64),
        protocol,
        "internal",
        "Unable to open shared memory region: '/modelport_no_such_key'",
    )


def test_register_past_the_end_of_the_object(client: Any, protocol: str, regions: Any) -> None:
    name, key, _ = regions(128)
    expect_error(
        lambda: client.register_system_shared_memory(name, key, 128, offset=64),
        protocol,
        "invalid",
        f"failed to register shared memory region '{name}': invalid args",
    )
    assert status_list(client, protocol) == []


def test_cuda_shared_memory_is_refused_without_a_gpu(client: Any, protocol: str) -> None:
    if open_cuda_ipc() is not None:
        pytest.skip("this machine has CUDA: tests/integration/test_gpu.py registers real CUDA regions")
    expect_error(
        lambda: client.register_cuda_shared_memory("gpu", base64.b64encode(b"\x00" * 64), 0, 64),
        protocol,
        "invalid",
        "failed to register CUDA shared memory region 'gpu': this server has no CUDA device",
    )
    if protocol == "http":
        assert client.get_cuda_shared_memory_status() == []
    else:
        assert len(client.get_cuda_shared_memory_status().regions) == 0


# --- inference through regions ---------------------------------------------------------------------
def test_add_sub_inputs_and_outputs_in_regions(client: Any, protocol: str, regions: Any) -> None:
    a = RNG.normal(size=(2, 16)).astype(np.float32)
    b = RNG.normal(size=(2, 16)).astype(np.float32)
    size = a.nbytes
    in_name, in_key, in_handle = regions(2 * size)
    out_name, out_key, out_handle = regions(2 * size)
    shm.set_shared_memory_region(in_handle, [a, b])
    client.register_system_shared_memory(in_name, in_key, 2 * size)
    client.register_system_shared_memory(out_name, out_key, 2 * size)
    result = client.infer(
        "add_sub",
        [
            shm_input(protocol, "INPUT0", [2, 16], "FP32", in_name, size),
            shm_input(protocol, "INPUT1", [2, 16], "FP32", in_name, size, offset=size),
        ],
        outputs=[
            shm_output(protocol, "OUTPUT0", out_name, size),
            shm_output(protocol, "OUTPUT1", out_name, size, offset=size),
        ],
    )
    total = shm.get_contents_as_numpy(out_handle, np.float32, [2, 16])
    difference = shm.get_contents_as_numpy(out_handle, np.float32, [2, 16], offset=size)
    plain = client.infer("add_sub", [data_input(protocol, "INPUT0", a), data_input(protocol, "INPUT1", b)])
    np.testing.assert_array_equal(total, plain.as_numpy("OUTPUT0"))
    np.testing.assert_array_equal(difference, plain.as_numpy("OUTPUT1"))
    np.testing.assert_allclose(total, a + b, rtol=1e-6)
    output = result.get_output("OUTPUT0")
    if protocol == "grpc":
        assert (output.datatype, list(output.shape)) == ("FP32", [2, 16])
        assert result.get_response().raw_output_contents[0] == b""  # the data went to the region
    else:
        assert (output["datatype"], output["shape"]) == ("FP32", [2, 16])
        assert "data" not in output and "binary_data_size" not in output.get("parameters", {})


def test_region_input_beside_plain_input(client: Any, protocol: str, regions: Any) -> None:
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    name, key, handle = regions(a.nbytes)
    shm.set_shared_memory_region(handle, [a])
    client.register_system_shared_memory(name, key, a.nbytes)
    result = client.infer(
        "add_sub",
        [shm_input(protocol, "INPUT0", [1, 16], "FP32", name, a.nbytes), data_input(protocol, "INPUT1", a)],
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a * 0)


def test_classifier_through_regions(client: Any, protocol: str, regions: Any) -> None:
    """The classifier's input through one registered region, its output read from another."""
    if mobilenet_available():
        model, in_name_t, out_name_t = "mobilenet_v2", "input", "logits"
        image = RNG.random((1, 3, 224, 224), dtype=np.float32)
        out_shape = [1, 1000]
    else:
        model, in_name_t, out_name_t = "classifier", "INPUT0", "OUTPUT0"
        image = RNG.normal(size=(1, 10)).astype(np.float32)
        out_shape = [1, 10]
    out_bytes = int(np.prod(out_shape)) * 4
    in_name, in_key, in_handle = regions(image.nbytes)
    out_name, out_key, out_handle = regions(out_bytes)
    shm.set_shared_memory_region(in_handle, [image])
    client.register_system_shared_memory(in_name, in_key, image.nbytes)
    client.register_system_shared_memory(out_name, out_key, out_bytes)
    client.infer(
        model,
        [shm_input(protocol, in_name_t, list(image.shape), "FP32", in_name, image.nbytes)],
        outputs=[shm_output(protocol, out_name_t, out_name, out_bytes)],
    )
    from_region = shm.get_contents_as_numpy(out_handle, np.float32, out_shape)
    plain = client.infer(model, [data_input(protocol, in_name_t, image)]).as_numpy(out_name_t)
    np.testing.assert_allclose(from_region, plain, rtol=1e-5, atol=1e-6)
    assert int(np.argmax(from_region)) == int(np.argmax(plain))


def test_bytes_through_regions(client: Any, protocol: str, regions: Any) -> None:
    data = np.array([[b"first"], [b"second value"]], dtype=object)
    serialized = serialize_byte_tensor(data)
    size = len(serialized.item())
    in_name, in_key, in_handle = regions(size)
    out_name, out_key, out_handle = regions(64)
    shm.set_shared_memory_region(in_handle, [serialized])
    client.register_system_shared_memory(in_name, in_key, size)
    client.register_system_shared_memory(out_name, out_key, 64)
    result = client.infer(
        "string_identity",
        [shm_input(protocol, "INPUT0", [2, 1], "BYTES", in_name, size)],
        outputs=[shm_output(protocol, "OUTPUT0", out_name, 64)],
    )
    echoed = shm.get_contents_as_numpy(out_handle, np.object_, [2, 1])
    np.testing.assert_array_equal(echoed, data)
    output = result.get_output("OUTPUT0")
    if protocol == "grpc":
        assert output.parameters["shared_memory_byte_size"].int64_param == size
    else:
        # As Triton: an HTTP output written to a region carries no `parameters` (C++ clients would
        # read them as binary data), only its name, datatype and shape.
        assert "parameters" not in output
        assert output["shape"] == [2, 1]


# --- bounds checks ----------------------------------------------------------------------------------
@pytest.fixture
def registered_64(client: Any, regions: Any) -> str:
    """A registered 64-byte region (room for one add_sub row)."""
    name, key, _ = regions(64)
    client.register_system_shared_memory(name, key, 64)
    return name


def test_unknown_input_region(client: Any, protocol: str) -> None:
    inputs = [shm_input(protocol, n, [1, 16], "FP32", "no_such_region", 64) for n in ("INPUT0", "INPUT1")]
    expect_error(
        lambda: client.infer("add_sub", inputs),
        protocol,
        "invalid",
        "Unable to find shared memory region: 'no_such_region'",
    )


def test_offset_past_the_end(client: Any, protocol: str, registered_64: str) -> None:
    inputs = [
        shm_input(protocol, n, [1, 16], "FP32", registered_64, 64, offset=64) for n in ("INPUT0", "INPUT1")
    ]
    expect_error(
        lambda: client.infer("add_sub", inputs),
        protocol,
        "invalid",
        f"Invalid offset for shared memory region: '{registered_64}'",
    )


def test_offset_plus_size_past_the_end(client: Any, protocol: str, registered_64: str) -> None:
    inputs = [
        shm_input(protocol, n, [1, 16], "FP32", registered_64, 64, offset=8) for n in ("INPUT0", "INPUT1")
    ]
    expect_error(
        lambda: client.infer("add_sub", inputs),
        protocol,
        "invalid",
        f"Invalid offset + byte size for shared memory region: '{registered_64}'",
    )


def test_input_size_does_not_match_shape(client: Any, protocol: str, registered_64: str) -> None:
    inputs = [shm_input(protocol, n, [1, 16], "FP32", registered_64, 32) for n in ("INPUT0", "INPUT1")]
    expect_error(
        lambda: client.infer("add_sub", inputs),
        protocol,
        "invalid",
        "input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected 64, got 32",
    )


def test_output_region_too_small(client: Any, protocol: str, registered_64: str) -> None:
    a = np.zeros((1, 16), np.float32)
    inputs = [data_input(protocol, "INPUT0", a), data_input(protocol, "INPUT1", a)]
    expect_error(
        lambda: client.infer("add_sub", inputs, outputs=[shm_output(protocol, "OUTPUT0", registered_64, 32)]),
        protocol,
        "invalid",
        "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at least "
        "64 bytes to hold the results",
    )


def test_unknown_output_region_fails_before_inference(client: Any, protocol: str) -> None:
    a = np.zeros((1, 16), np.float32)
    inputs = [data_input(protocol, "INPUT0", a), data_input(protocol, "INPUT1", a)]
    expect_error(
        lambda: client.infer(
            "add_sub", inputs, outputs=[shm_output(protocol, "OUTPUT0", "no_such_region", 64)]
        ),
        protocol,
        "invalid",
        "Unable to find shared memory region: 'no_such_region'",
    )


def test_unregistered_region_is_gone(client: Any, protocol: str, regions: Any) -> None:
    a = np.ones((1, 16), np.float32)
    name, key, handle = regions(a.nbytes)
    shm.set_shared_memory_region(handle, [a])
    client.register_system_shared_memory(name, key, a.nbytes)
    inputs = [shm_input(protocol, n, [1, 16], "FP32", name, a.nbytes) for n in ("INPUT0", "INPUT1")]
    np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("OUTPUT0"), a * 2)
    client.unregister_system_shared_memory(name)
    expect_error(lambda: client.infer("add_sub", inputs), protocol, "invalid", f"'{name}'")
