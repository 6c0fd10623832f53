"""Protocol datatypes (BOOL, INT8 ... FP64, BYTES) and their numpy and ModelConfig equivalents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class DataType:
    """One protocol datatype and its numpy dtype (None for BF16, which numpy lacks)."""

    name: str
    config_name: str
    dtype: np.dtype | None
    itemsize: int  # 0 for variable-size BYTES

    @property
    def is_bytes(self) -> bool:
        return self.name == "BYTES"


def _entry(name: str, config_name: str, dtype: str | None, itemsize: int) -> DataType:
    return DataType(name, config_name, np.dtype(dtype) if dtype else None, itemsize)


_ALL = (
    _entry("BOOL", "TYPE_BOOL", "bool", 1),
    _entry("UINT8", "TYPE_UINT8", "<u1", 1),
    _entry("UINT16", "TYPE_UINT16", "<u2", 2),
    _entry("UINT32", "TYPE_UINT32", "<u4", 4),
    _entry("UINT64", "TYPE_UINT64", "<u8", 8),
    _entry("INT8", "TYPE_INT8", "<i1", 1),
    _entry("INT16", "TYPE_INT16", "<i2", 2),
    _entry("INT32", "TYPE_INT32", "<i4", 4),
    _entry("INT64", "TYPE_INT64", "<i8", 8),
    _entry("FP16", "TYPE_FP16", "<f2", 2),
    _entry("FP32", "TYPE_FP32", "<f4", 4),
    _entry("FP64", "TYPE_FP64", "<f8", 8),
    _entry("BF16", "TYPE_BF16", None, 2),
    DataType("BYTES", "TYPE_STRING", np.dtype(object), 0),
)

BY_NAME: dict[str, DataType] = {d.name: d for d in _ALL}
BY_CONFIG_NAME: dict[str, DataType] = {d.config_name: d for d in _ALL}
_BY_NUMPY_KIND: dict[str, DataType] = {
    d.dtype.str: d for d in _ALL if d.dtype is not None and d.name != "BYTES"
}

BOOL = BY_NAME["BOOL"]
FP32 = BY_NAME["FP32"]
BYTES = BY_NAME["BYTES"]


def from_name(name: str) -> DataType:
    """The datatype called `name` in the protocol, or INVALID_ARG."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInput(f"invalid datatype '{name}'") from None


def from_numpy(dtype: np.dtype) -> DataType:
    """The protocol datatype of a numpy dtype (object, str and bytes arrays are BYTES)."""
    if dtype.kind in ("O", "S", "U"):
        return BYTES
    key = dtype.newbyteorder("<").str if dtype.byteorder == ">" else dtype.str
    found = _BY_NUMPY_KIND.get(key)
    if found is None:
        raise InvalidInput(f"unsupported numpy dtype {dtype}")
    return found
