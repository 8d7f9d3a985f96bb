"""SignatureDefs as plain data: what a client sends to and gets back from a served model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel.format import dtypes
from airflow_savedmodel.protos import meta_graph_pb2, struct_pb2

DEFAULT_SERVING_KEY = "serving_default"
INIT_OP_KEY = "__saved_model_init_op"
TRAIN_OP_KEY = "__saved_model_train_op"
RESERVED_KEYS = frozenset({INIT_OP_KEY, TRAIN_OP_KEY})
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. ``shape`` is None when the rank is unknown; -1 marks an unknown dimension."""

    key: str
    dtype: str
    shape: tuple[int, ...] | None
    encoding: str = "dense"  # dense | coo_sparse | composite
    tensor_name: str | None = None
    sparse_tensor_names: dict[str, str] | None = None
    composite_type: str | None = None
    components: tuple[TensorSpec, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
            "encoding": self.encoding,
            "name": self.tensor_name,
        }
        if self.sparse_tensor_names is not None:
            doc["sparse"] = dict(self.sparse_tensor_names)
        if self.encoding == "composite":
            doc["type_spec"] = self.composite_type
            doc["components"] = [c.to_json() for c in self.components]
        return doc

    def shape_text(self) -> str:
        """``(-1, 3)`` like saved_model_cli, or ``unknown_rank``."""
        if self.shape is None:
            return "unknown_rank"
        if len(self.shape) == 1:
            return f"({self.shape[0]})"
        return "(" + ", ".join(str(d) for d in self.shape) + ")"


@dataclass(frozen=True)
class Signature:
    key: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    defaults: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "method_name": self.method_name,
            "inputs": {k: v.to_json() for k, v in sorted(self.inputs.items())},
            "outputs": {k: v.to_json() for k, v in sorted(self.outputs.items())},
            "defaults": list(self.defaults),
        }


def shape_of(proto: Any) -> tuple[int, ...] | None:
    """A TensorShapeProto as a tuple (-1 for unknown dimensions) or None for unknown rank."""
    if proto.unknown_rank:
        return None
    return tuple(int(d.size) for d in proto.dim)


def tensor_spec(key: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    encoding = info.WhichOneof("encoding")
    dtype = dtypes.name(info.dtype)
    shape = shape_of(info.tensor_shape) if info.HasField("tensor_shape") else None
    if encoding == "coo_sparse":
        names = {
            "values": info.coo_sparse.values_tensor_name,
            "indices": info.coo_sparse.indices_tensor_name,
            "dense_shape": info.coo_sparse.dense_shape_tensor_name,
        }
        return TensorSpec(key, dtype, shape, "coo_sparse", None, names)
    if encoding == "composite_tensor":
        spec = info.composite_tensor.type_spec
        type_name = spec.type_spec_class_name or struct_pb2.TypeSpecProto.TypeSpecClass.Name(
            spec.type_spec_class
        )
        components = tuple(
            tensor_spec(f"{key}[{i}]", c) for i, c in enumerate(info.composite_tensor.components)
        )
        return TensorSpec(key, dtype, shape, "composite", None, None, type_name, components)
    return TensorSpec(key, dtype, shape, "dense", info.name if encoding == "name" else None)


def signature(key: str, proto: meta_graph_pb2.SignatureDef) -> Signature:
    return Signature(
        key=key,
        method_name=proto.method_name,
        inputs={k: tensor_spec(k, v) for k, v in sorted(proto.inputs.items())},
        outputs={k: tensor_spec(k, v) for k, v in sorted(proto.outputs.items())},
        defaults=tuple(sorted(proto.defaults)),
    )
