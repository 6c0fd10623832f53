"""Model warmup: the config's `model_warmup` samples run on every instance before a version is READY.

Each sample gives its inputs as zero data, random data, or a raw file in the model's `warmup/`
folder (row-major; BYTES elements as 4-byte little-endian length + bytes, as Triton reads them).
A sample that fails fails the load, as in Triton.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.config.spec import ModelSpec
from modelport.errors import InvalidInput, ModelportError
from modelport.protocol import model_config_pb2
from modelport.repository.overrides import confined_path
from modelport.scheduling.instances import InstancePool
from modelport.scheduling.normalize import normalize_request
from modelport.tensor import datatype
from modelport.tensor.bytes_codec import decode_bytes
from modelport.tensor.records import InferInput, InferRequest

log = logging.getLogger(__name__)

WARMUP_FOLDER = "warmup"


@dataclass(frozen=True, slots=True)
class WarmupSample:
    name: str
    request: InferRequest
    count: int


def build_samples(spec: ModelSpec, model_dir: Path) -> list[WarmupSample]:
    """The config's warmup samples as validated requests (INVALID_ARG when one is malformed)."""
    samples: list[WarmupSample] = []
    rng = np.random.default_rng(0)
    for warmup in spec.proto.model_warmup:
        batch = max(warmup.batch_size, 1)
        if spec.max_batch_size == 0 and batch != 1:
            raise InvalidInput(
                f"warmup setting '{warmup.name}' of model '{spec.name}': batch_size must be 1 "
                f"for a model that does not batch"
            )
        request = InferRequest(model_name=spec.name, id=f"warmup:{warmup.name}")
        for input_name, sample in sorted(warmup.inputs.items()):
            request.inputs.append(_input(spec, warmup.name, input_name, sample, batch, model_dir, rng))
        try:
            normalize_request(request, spec)
        except InvalidInput as exc:
            raise InvalidInput(
                f"warmup setting '{warmup.name}' of model '{spec.name}': {exc.message}"
            ) from None
        samples.append(WarmupSample(warmup.name, request, max(warmup.count, 1)))
    return samples


async def run_warmup(spec: ModelSpec, version: int, pool: InstancePool, samples: list[WarmupSample]) -> None:
    """Run every sample `count` times on each instance of a pool nobody else uses yet."""
    if not samples:
        return
    # The idle queue is FIFO and an instance rejoins it when its batch ends, so acquiring one
    # instance at a time visits every instance in turn.
    for sample in samples:
        for _ in range(sample.count * pool.size):
            instance = await pool.acquire()
            results = (await pool.execute(instance, [sample.request])).results
            if isinstance(results[0], ModelportError):
                raise InvalidInput(
                    f"warmup setting '{sample.name}' of model '{spec.name}' version {version} "
                    f"failed: {results[0].message}"
                )
    log.info("warmed up '%s' version %d with %d sample(s)", spec.name, version, len(samples))


def _input(
    spec: ModelSpec,
    sample: str,
    name: str,
    config: model_config_pb2.ModelWarmup.Input,
    batch: int,
    model_dir: Path,
    rng: np.random.Generator,
) -> InferInput:
    tensor = spec.input(name)
    if tensor is None:
        raise InvalidInput(f"warmup setting '{sample}' of model '{spec.name}': unknown input '{name}'")
    dtype = datatype.BY_CONFIG_NAME.get(model_config_pb2.DataType.Name(config.data_type))
    if dtype is None or dtype.dtype is None:
        raise InvalidInput(
            f"warmup setting '{sample}' of model '{spec.name}': unsupported data type for '{name}'"
        )
    dims = tuple(int(d) for d in config.dims)
    if any(d < 0 for d in dims):
        raise InvalidInput(
            f"warmup setting '{sample}' of model '{spec.name}': dims of '{name}' must be fixed"
        )
    shape = (batch, *dims) if spec.max_batch_size > 0 and not tensor.is_shape_tensor else dims
    count = int(np.prod(shape, dtype=np.int64))
    which = config.WhichOneof("input_data_type")
    if which == "input_data_file":
        data = _file_data(spec, sample, config.input_data_file, model_dir, dtype, count)
    elif which == "random_data" and config.random_data:
        data = _random_data(dtype, count, rng)
    else:
        data = _zero_data(dtype, count)
    return InferInput(name, dtype.name, shape, data.reshape(shape))


def _zero_data(dtype: datatype.DataType, count: int) -> np.ndarray:
    if dtype.is_bytes:
        return np.array([b""] * count, dtype=object)
    assert dtype.dtype is not None
    return np.zeros(count, dtype=dtype.dtype)


def _random_data(dtype: datatype.DataType, count: int, rng: np.random.Generator) -> np.ndarray:
    assert dtype.dtype is not None
    if dtype.is_bytes:
        return np.array(
            [bytes(rng.integers(97, 123, size=8, dtype=np.uint8)) for _ in range(count)], dtype=object
        )
    if dtype.name == "BOOL":
        return rng.integers(0, 2, size=count).astype(np.bool_)
    if dtype.dtype.kind in "iu":
        return rng.integers(0, 100, size=count).astype(dtype.dtype)
    return rng.random(count).astype(dtype.dtype)


def _file_data(
    spec: ModelSpec, sample: str, file_name: str, model_dir: Path, dtype: datatype.DataType, count: int
) -> np.ndarray:
    relative = confined_path(spec.name, file_name)
    path = model_dir / WARMUP_FOLDER / relative
    if path.is_symlink() or not path.is_file():
        raise InvalidInput(
            f"warmup setting '{sample}' of model '{spec.name}': file '{WARMUP_FOLDER}/{relative}' is missing"
        )
    raw = path.read_bytes()
    if dtype.is_bytes:
        values = decode_bytes(raw)
        if values.size < count:
            raise InvalidInput(
                f"warmup setting '{sample}' of model '{spec.name}': '{relative}' holds too few strings"
            )
        return values[:count]
    assert dtype.dtype is not None
    needed = count * dtype.itemsize
    if len(raw) < needed:
        raise InvalidInput(
            f"warmup setting '{sample}' of model '{spec.name}': '{relative}' has {len(raw)} bytes, "
            f"needs {needed}"
        )
    data: np.ndarray = np.frombuffer(raw[:needed], dtype=dtype.dtype).copy()
    return data
