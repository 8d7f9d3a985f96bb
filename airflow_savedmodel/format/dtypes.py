"""TensorFlow DataType numbers mapped to names and little-endian numpy dtypes."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from airflow_savedmodel.protos import types_pb2

if TYPE_CHECKING:
    import numpy as np

STRING = types_pb2.DT_STRING
RESOURCE = types_pb2.DT_RESOURCE
VARIANT = types_pb2.DT_VARIANT
REF_OFFSET = 100

# numpy's own dtypes, by their codes. The ones numpy lacks (bfloat16, float8, int4 ...) come from
# ml_dtypes. Both are imported only when a tensor's bytes are turned into an array: reading a
# model's structure (inspect, most of validate) needs neither, and numpy costs a few tenths of a
# second and ml_dtypes up to two seconds at every CLI call and Airflow task that imports them.
_NUMPY_CODES: dict[int, str] = {
    types_pb2.DT_FLOAT: "<f4",
    types_pb2.DT_DOUBLE: "<f8",
    types_pb2.DT_INT32: "<i4",
    types_pb2.DT_UINT8: "u1",
    types_pb2.DT_INT16: "<i2",
    types_pb2.DT_INT8: "i1",
    types_pb2.DT_COMPLEX64: "<c8",
    types_pb2.DT_INT64: "<i8",
    types_pb2.DT_BOOL: "?",
    types_pb2.DT_QINT8: "i1",
    types_pb2.DT_QUINT8: "u1",
    types_pb2.DT_QINT32: "<i4",
    types_pb2.DT_QINT16: "<i2",
    types_pb2.DT_QUINT16: "<u2",
    types_pb2.DT_UINT16: "<u2",
    types_pb2.DT_COMPLEX128: "<c16",
    types_pb2.DT_HALF: "<f2",
    types_pb2.DT_UINT32: "<u4",
    types_pb2.DT_UINT64: "<u8",
}
_ML_DTYPES: dict[int, str] = {  # DataType -> the ml_dtypes attribute
    types_pb2.DT_BFLOAT16: "bfloat16",
    types_pb2.DT_FLOAT8_E5M2: "float8_e5m2",
    types_pb2.DT_FLOAT8_E4M3FN: "float8_e4m3fn",
    types_pb2.DT_FLOAT8_E4M3FNUZ: "float8_e4m3fnuz",
    types_pb2.DT_FLOAT8_E4M3B11FNUZ: "float8_e4m3b11fnuz",
    types_pb2.DT_FLOAT8_E5M2FNUZ: "float8_e5m2fnuz",
    types_pb2.DT_INT4: "int4",
    types_pb2.DT_UINT4: "uint4",
    types_pb2.DT_INT2: "int2",
    types_pb2.DT_UINT2: "uint2",
    types_pb2.DT_FLOAT4_E2M1FN: "float4_e2m1fn",
}


@functools.cache
def _tables() -> tuple[dict[int, np.dtype], dict[np.dtype, int]]:
    """(DataType -> numpy dtype, numpy dtype -> DataType) for numpy's own dtypes."""
    import numpy as np

    to_np = {dt: np.dtype(code) for dt, code in _NUMPY_CODES.items()}
    from_np: dict[np.dtype, int] = {}
    for dt, np_dtype in to_np.items():
        from_np.setdefault(np_dtype.newbyteorder("="), dt)
    from_np[np.dtype(object)] = STRING
    from_np[np.dtype("S")] = STRING
    return to_np, from_np


@functools.cache
def _load_ml_dtypes() -> None:
    """Add ml_dtypes' types to both tables, once."""
    import ml_dtypes
    import numpy as np

    to_np, from_np = _tables()
    for dt, attr in _ML_DTYPES.items():
        to_np[dt] = np.dtype(getattr(ml_dtypes, attr))
        from_np.setdefault(to_np[dt].newbyteorder("="), dt)


def base(dtype: int) -> int:
    """The value type of a reference dtype (``DT_FLOAT_REF`` -> ``DT_FLOAT``); others unchanged."""
    return dtype - REF_OFFSET if dtype > REF_OFFSET else dtype


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
    if base(dtype) in _ML_DTYPES:
        _load_ml_dtypes()
    return _tables()[0].get(base(dtype))


def from_numpy(dtype: np.dtype) -> int:
    """The DataType for a numpy dtype (bytes and object arrays are strings)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.kind in ("S", "O", "U"):
        return STRING
    found = _tables()[1].get(dt.newbyteorder("="))
    if found is None:  # perhaps one of ml_dtypes'
        _load_ml_dtypes()
        found = _tables()[1].get(dt.newbyteorder("="))
    if found is None:
        raise ValueError(f"no TensorFlow dtype for numpy dtype {dt}")
    return found
