"""TensorFlow DataType numbers mapped to names and little-endian numpy dtypes."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from airflow_savedmodel.protos import types_pb2

STRING = types_pb2.DT_STRING
RESOURCE = types_pb2.DT_RESOURCE
VARIANT = types_pb2.DT_VARIANT
REF_OFFSET = 100

_NUMPY: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_COMPLEX64: np.dtype("<c8"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_BOOL: np.dtype("?"),
    types_pb2.DT_QINT8: np.dtype("i1"),
    types_pb2.DT_QUINT8: np.dtype("u1"),
    types_pb2.DT_QINT32: np.dtype("<i4"),
    types_pb2.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    types_pb2.DT_QINT16: np.dtype("<i2"),
    types_pb2.DT_QUINT16: np.dtype("<u2"),
    types_pb2.DT_UINT16: np.dtype("<u2"),
    types_pb2.DT_COMPLEX128: np.dtype("<c16"),
    types_pb2.DT_HALF: np.dtype("<f2"),
    types_pb2.DT_UINT32: np.dtype("<u4"),
    types_pb2.DT_UINT64: np.dtype("<u8"),
    types_pb2.DT_FLOAT8_E5M2: np.dtype(ml_dtypes.float8_e5m2),
    types_pb2.DT_FLOAT8_E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    types_pb2.DT_FLOAT8_E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    types_pb2.DT_FLOAT8_E4M3B11FNUZ: np.dtype(ml_dtypes.float8_e4m3b11fnuz),
    types_pb2.DT_FLOAT8_E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    types_pb2.DT_INT4: np.dtype(ml_dtypes.int4),
    types_pb2.DT_UINT4: np.dtype(ml_dtypes.uint4),
    types_pb2.DT_INT2: np.dtype(ml_dtypes.int2),
    types_pb2.DT_UINT2: np.dtype(ml_dtypes.uint2),
    types_pb2.DT_FLOAT4_E2M1FN: np.dtype(ml_dtypes.float4_e2m1fn),
}

_FROM_NUMPY: dict[np.dtype, int] = {}
for _dt, _np in _NUMPY.items():
    _FROM_NUMPY.setdefault(_np.newbyteorder("="), _dt)
_FROM_NUMPY[np.dtype(object)] = STRING
_FROM_NUMPY[np.dtype("S")] = STRING


def base(dtype: int) -> int:
    """The value type of a reference dtype (``DT_FLOAT_REF`` -> ``DT_FLOAT``); others unchanged."""
    return dtype - REF_OFFSET if dtype > REF_OFFSET else dtype


def is_known(dtype: int) -> bool:
    return dtype in types_pb2.DataType.values()


def name(dtype: int) -> str:
    """``DT_FLOAT`` style name; unknown numbers render as ``DT_<n>`` rather than failing."""
    try:
        return types_pb2.DataType.Name(dtype)  # type: ignore[arg-type]
    except ValueError:
        return f"DT_{dtype}"


def from_name(text: str) -> int:
    """Accept ``DT_FLOAT``, ``float``, ``float32`` and other common spellings."""
    key = text.strip().upper()
    if not key.startswith("DT_"):
        key = "DT_" + key
    aliases = {
        "DT_FLOAT32": "DT_FLOAT",
        "DT_FLOAT64": "DT_DOUBLE",
        "DT_FLOAT16": "DT_HALF",
        "DT_BYTES": "DT_STRING",
    }
    key = aliases.get(key, key)
    return int(types_pb2.DataType.Value(key))


def to_numpy(dtype: int) -> np.dtype | None:
    """The numpy dtype whose bytes TensorFlow stores for ``dtype``; None for string, resource, variant."""
    return _NUMPY.get(base(dtype))


def from_numpy(dtype: np.dtype) -> int:
    """The DataType for a numpy dtype (bytes and object arrays are strings)."""
    dt = np.dtype(dtype)
    if dt.kind in ("S", "O", "U"):
        return STRING
    try:
        return _FROM_NUMPY[dt.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"no TensorFlow dtype for numpy dtype {dt}") from None
