"""Building GraphDefs node by node: the small vocabulary this package needs to write graphs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from airflow_savedmodel.format import dtypes, tensor_proto
from airflow_savedmodel.protos import graph_pb2, tensor_pb2, types_pb2

# The GraphDef version stamps TensorFlow 2.21 writes; consumers need min_consumer <= their version.
GRAPH_PRODUCER = 2474
GRAPH_MIN_CONSUMER = 12


def shape_proto(shape: Sequence[int] | None) -> Any:
    proto = tensor_pb2.TensorShapeProto()
    if shape is None:
        proto.unknown_rank = True
    else:
        for dim in shape:
            proto.dim.add(size=-1 if dim is None else int(dim))
    return proto


def attr(value: Any) -> graph_pb2.AttrValue:
    """An AttrValue from a plain Python value; wrap DataTypes with :class:`DType` and shapes with :class:`Shape`."""
    out = graph_pb2.AttrValue()
    if isinstance(value, graph_pb2.AttrValue):
        out.CopyFrom(value)
    elif isinstance(value, DType):
        out.type = types_pb2.DataType.ValueType(value.value)
    elif isinstance(value, Shape):
        out.shape.CopyFrom(shape_proto(value.dims))
    elif isinstance(value, tensor_pb2.TensorProto):
        out.tensor.CopyFrom(value)
    elif isinstance(value, bool):
        out.b = value
    elif isinstance(value, int):
        out.i = value
    elif isinstance(value, float):
        out.f = value
    elif isinstance(value, str | bytes):
        out.s = value.encode() if isinstance(value, str) else value
    elif isinstance(value, TypeList):
        out.list.SetInParent()
        out.list.type.extend(types_pb2.DataType.ValueType(t) for t in value.types)
    elif isinstance(value, ShapeList):
        out.list.SetInParent()
        out.list.shape.extend(shape_proto(s) for s in value.shapes)
    elif isinstance(value, StringList):
        out.list.SetInParent()
        out.list.s.extend(s.encode() for s in value.items)
    else:
        raise TypeError(f"no AttrValue for {value!r}")
    return out


class DType:
    def __init__(self, value: int) -> None:
        self.value = value


class Shape:
    def __init__(self, dims: Sequence[int | None] | None) -> None:
        self.dims = None if dims is None else [-1 if d is None else d for d in dims]


class TypeList:
    def __init__(self, types: Iterable[int]) -> None:
        self.types = list(types)


class ShapeList:
    def __init__(self, shapes: Iterable[Sequence[int] | None]) -> None:
        self.shapes = list(shapes)


class StringList:
    def __init__(self, items: Iterable[str]) -> None:
        self.items = list(items)


class GraphBuilder:
    """Appends nodes to a GraphDef; node names must be unique."""

    def __init__(self, graph: graph_pb2.GraphDef | None = None) -> None:
        self.graph = graph if graph is not None else graph_pb2.GraphDef()
        if not self.graph.HasField("versions"):
            self.graph.versions.producer = GRAPH_PRODUCER
            self.graph.versions.min_consumer = GRAPH_MIN_CONSUMER
        self.names = {n.name for n in self.graph.node}

    def node(self, name: str, op: str, inputs: Sequence[str] = (), **attrs: Any) -> str:
        if name in self.names:
            raise ValueError(f"graph already has a node named {name!r}")
        node = self.graph.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, value in attrs.items():
            node.attr[key].CopyFrom(attr(value))
        self.names.add(name)
        return name

    def const(self, name: str, value: Any, dtype: int | None = None) -> str:
        proto = tensor_proto.from_numpy(value, dtype)
        return self.node(name, "Const", dtype=DType(proto.dtype), value=proto)

    def fill_const(self, name: str, shape: Sequence[int], value: float, dtype: int) -> str:
        """A Const holding one value TensorFlow expands to ``shape`` (how tf.zeros stores small tensors)."""
        proto = tensor_proto.from_numpy(np.zeros((), dtype=dtypes.to_numpy(dtype)), dtype)
        proto.ClearField("tensor_content")
        proto.tensor_shape.CopyFrom(shape_proto(shape))
        if dtype in (types_pb2.DT_FLOAT,):
            proto.float_val.append(value)
        elif dtype == types_pb2.DT_DOUBLE:
            proto.double_val.append(value)
        else:
            raise ValueError(f"fill_const supports float and double, not {dtypes.name(dtype)}")
        return self.node(name, "Const", dtype=DType(dtype), value=proto)
