"""TensorProto values (graph constants, attr defaults) to and from numpy."""

from __future__ import annotations

import math

import numpy as np

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format import dtypes
from airflow_savedmodel.protos import tensor_pb2, types_pb2

MAX_ELEMENTS = 1 << 28
# A TensorProto may hold fewer values than its shape has elements (TF repeats the last one). The
# file is then no bound on memory, so filling is capped: 256 MiB of decoded values.
MAX_FILLED_BYTES = 256 << 20

_INT_VAL: set[int] = {
    types_pb2.DT_INT32,
    types_pb2.DT_INT16,
    types_pb2.DT_INT8,
    types_pb2.DT_UINT8,
    types_pb2.DT_UINT16,
    types_pb2.DT_QINT8,
    types_pb2.DT_QUINT8,
    types_pb2.DT_QINT16,
    types_pb2.DT_QUINT16,
    types_pb2.DT_QINT32,
    types_pb2.DT_INT4,
    types_pb2.DT_UINT4,
    types_pb2.DT_INT2,
    types_pb2.DT_UINT2,
}
_TYPED_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}


def shape(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    return tuple(int(d.size) for d in proto.tensor_shape.dim)


def to_numpy(proto: tensor_pb2.TensorProto, max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """Decode a TensorProto; a short typed value list is padded with its last value, as TF does."""
    dims = shape(proto)
    if any(d < 0 for d in dims):
        raise FormatError(f"tensor has invalid shape {list(dims)}")
    if math.prod(d for d in dims if d) >= 1 << 62:
        raise FormatError(f"tensor shape {list(dims)} is larger than any tensor can be")
    count = math.prod(dims)
    if count > max_elements:
        raise FormatError(f"tensor of {count} elements exceeds the limit of {max_elements}")
    dtype = dtypes.base(proto.dtype)
    if dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        _check_fill(len(values), count, 8, dims)
        return _filled(values, count, b"", np.dtype(object)).reshape(dims)
    np_dtype = dtypes.to_numpy(dtype)
    if np_dtype is None:
        raise FormatError(f"tensor dtype {dtypes.name(proto.dtype)} has no numeric value")
    if proto.tensor_content:
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise FormatError(
                f"tensor_content of {len(proto.tensor_content)} bytes for {count} {dtypes.name(dtype)} elements"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(dims)
    raw: np.ndarray
    field = "int_val" if dtype in _INT_VAL else _TYPED_FIELD.get(dtype, "float8_val")
    held = len(getattr(proto, field))
    held = held // 2 if dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128) else held
    _check_fill(held, count, np_dtype.itemsize, dims)
    if dtype in _INT_VAL:
        raw = np.array(list(proto.int_val), dtype=np.int64)
    elif dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        bits = np.array(list(proto.half_val), dtype=np.int64).astype(np.uint16)
        raw = bits.view(np_dtype)
    elif dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        pairs = np.array(list(getattr(proto, _TYPED_FIELD[dtype])), dtype=np.float64)
        raw = pairs[0::2] + 1j * pairs[1::2] if pairs.size else pairs
    elif dtype in _TYPED_FIELD:
        raw = np.array(list(getattr(proto, _TYPED_FIELD[dtype])))
    else:  # float8 and float4 types keep one byte per element
        raw = np.frombuffer(proto.float8_val, dtype=np_dtype)
    return _filled(list(raw), count, np.zeros((), np_dtype).item(), np_dtype).astype(np_dtype).reshape(dims)


def _check_fill(held: int, count: int, itemsize: int, dims: tuple[int, ...]) -> None:
    """Refuse to expand ``held`` values into ``count`` elements beyond MAX_FILLED_BYTES."""
    if held < count and count * itemsize > MAX_FILLED_BYTES:
        raise FormatError(
            f"tensor of shape {list(dims)} holds {held} value(s); filling its {count:,} elements would "
            f"take {count * itemsize:,} bytes, over the {MAX_FILLED_BYTES:,}-byte limit"
        )


def _filled(values: list, count: int, zero: object, dtype: np.dtype) -> np.ndarray:
    out = np.empty(count, dtype=dtype)
    if count == 0:
        return out
    if not values:
        out[:] = zero if dtype != np.dtype(object) else [zero] * count
        return out
    if len(values) > count:
        raise FormatError(f"tensor holds {len(values)} values for {count} elements")
    if dtype == np.dtype(object):
        out[:] = values + [values[-1]] * (count - len(values))
    else:
        out[: len(values)] = values
        out[len(values) :] = values[-1]
    return out


def from_numpy(value: np.ndarray | object, dtype: int | None = None) -> tensor_pb2.TensorProto:
    """A TensorProto as TensorFlow's make_tensor_proto writes it (tensor_content for numbers)."""
    if dtype is not None and dtypes.base(dtype) == types_pb2.DT_STRING:
        array = np.asarray(value, dtype=object)
    else:
        array = np.asarray(value)
    tf_dtype = dtype if dtype is not None else dtypes.from_numpy(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DataType.ValueType(tf_dtype))
    proto.tensor_shape.SetInParent()
    for d in array.shape:
        proto.tensor_shape.dim.add(size=d)
    if dtypes.base(tf_dtype) == types_pb2.DT_STRING:
        proto.string_val.extend(x.encode() if isinstance(x, str) else bytes(x) for x in array.reshape(-1))
        return proto
    np_dtype = dtypes.to_numpy(tf_dtype)
    if np_dtype is None:
        raise ValueError(f"cannot encode values of dtype {dtypes.name(tf_dtype)}")
    if array.size:
        proto.tensor_content = np.ascontiguousarray(array.astype(np_dtype)).tobytes()
    return proto


def equal(a: tensor_pb2.TensorProto, b: tensor_pb2.TensorProto) -> bool:
    """TensorFlow's semantic tensor equality: same dtype and shape, bit-identical values."""
    if a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True):
        return True
    if a.dtype != b.dtype or shape(a) != shape(b):
        return False
    try:
        left, right = to_numpy(a), to_numpy(b)
    except FormatError:
        return False
    if left.dtype == object:
        return bool(left.tolist() == right.tolist())
    return left.tobytes() == right.tobytes()
