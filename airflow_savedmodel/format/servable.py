"""Export a dense network trained anywhere (numpy weights) as a servable TF1-style SavedModel.

The graph holds a float32 placeholder, resource variables restored from variables/ by a
Saver subgraph, and a ``serving_default`` predict signature; optionally ``classify`` and
``regress`` signatures reading serialized tf.Example protos, as TensorFlow Serving's
Classify and Regress APIs require. TensorFlow's TF1 loader (what TensorFlow Serving runs) and
``tf.saved_model.load`` both load it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_savedmodel.format.builder import SavedModelBuilder
from airflow_savedmodel.format.graphdef import DType, GraphBuilder, Shape, ShapeList, TypeList
from airflow_savedmodel.format.signatures import CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD
from airflow_savedmodel.format.variables_graph import Variable, add_saver, resource_variable
from airflow_savedmodel.protos import meta_graph_pb2, types_pb2

ACTIVATIONS = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}
FLOAT = types_pb2.DT_FLOAT


@dataclass(frozen=True)
class DenseLayer:
    """``activation(inputs @ kernel + bias)`` with kernel of shape (n_in, n_out)."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        kernel, bias = np.asarray(self.kernel), np.asarray(self.bias)
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise ValueError(f"kernel {kernel.shape} and bias {bias.shape} do not form a dense layer")


def forward(layers: Sequence[DenseLayer], inputs: np.ndarray) -> np.ndarray:
    """The network's output computed with numpy in float32, the reference for exported models."""
    out: np.ndarray = np.asarray(inputs, dtype=np.float32)
    for layer in layers:
        out = out @ np.asarray(layer.kernel, np.float32) + np.asarray(layer.bias, np.float32)
        if layer.activation == "relu":
            out = np.maximum(out, 0)
        elif layer.activation == "sigmoid":
            out = 1 / (1 + np.exp(-out))
        elif layer.activation == "tanh":
            out = np.tanh(out)
        elif layer.activation == "softmax":
            shifted = np.exp(out - out.max(axis=-1, keepdims=True))
            out = shifted / shifted.sum(axis=-1, keepdims=True)
    return out.astype(np.float32)


def _check_layers(layers: Sequence[DenseLayer]) -> None:
    if not layers:
        raise ValueError("a dense model needs at least one layer")
    for before, after in itertools.pairwise(layers):
        if before.kernel.shape[1] != after.kernel.shape[0]:
            raise ValueError(
                f"layer output {before.kernel.shape[1]} does not feed input {after.kernel.shape[0]}"
            )


def _info(name: str, dtype: int, shape: Sequence[int]) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=name, dtype=types_pb2.DataType.ValueType(dtype))
    for dim in shape:
        info.tensor_shape.dim.add(size=dim)
    return info


def _stack(
    g: GraphBuilder, scope: str, inputs: str, layers: Sequence[DenseLayer], variables: list[tuple[str, str]]
) -> str:
    """The layers applied to ``inputs``, node names under ``scope``; variables are (kernel, bias) names."""
    out = inputs
    for i, (layer, (kernel, bias)) in enumerate(zip(layers, variables, strict=True)):
        name = f"{scope}dense" + (f"_{i}" if i else "")
        k = g.node(f"{name}/MatMul/ReadVariableOp", "ReadVariableOp", [kernel], dtype=DType(FLOAT))
        out = g.node(f"{name}/MatMul", "MatMul", [out, k], T=DType(FLOAT))
        b = g.node(f"{name}/BiasAdd/ReadVariableOp", "ReadVariableOp", [bias], dtype=DType(FLOAT))
        out = g.node(f"{name}/BiasAdd", "BiasAdd", [out, b], T=DType(FLOAT))
        op = ACTIVATIONS[layer.activation]
        if op is not None:
            out = g.node(f"{name}/{op}", op, [out], T=DType(FLOAT))
    return out


def _parse_examples(g: GraphBuilder, feature: str, width: int) -> tuple[str, str]:
    """A string placeholder of serialized tf.Example protos and the float features parsed from it."""
    serialized = g.node("tf_example", "Placeholder", dtype=DType(types_pb2.DT_STRING), shape=Shape([-1]))
    empty = np.array([], dtype=object)
    names = g.const("ParseExample/names", empty, types_pb2.DT_STRING)
    sparse = g.const("ParseExample/sparse_keys", empty, types_pb2.DT_STRING)
    dense = g.const(
        "ParseExample/dense_keys", np.array([feature.encode()], dtype=object), types_pb2.DT_STRING
    )
    ragged = g.const("ParseExample/ragged_keys", empty, types_pb2.DT_STRING)
    default = g.const("ParseExample/dense_default", np.zeros((0,), np.float32))
    parsed = g.node(
        "ParseExample/ParseExampleV2",
        "ParseExampleV2",
        [serialized, names, sparse, dense, ragged, default],
        Tdense=TypeList([FLOAT]),
        num_sparse=0,
        sparse_types=TypeList([]),
        ragged_value_types=TypeList([]),
        ragged_split_types=TypeList([]),
        dense_shapes=ShapeList([[width]]),
    )
    return serialized, f"{parsed}:0"


def _tile_labels(g: GraphBuilder, scores: str, labels: Sequence[str]) -> str:
    """A [batch, n_classes] string tensor repeating the class labels for every example."""
    int32 = types_pb2.DT_INT32
    shape = g.node("classify/Shape", "Shape", [scores], T=DType(FLOAT), out_type=DType(int32))
    start = g.const("classify/strided_slice/begin", np.array([0], np.int32))
    stop = g.const("classify/strided_slice/end", np.array([1], np.int32))
    step = g.const("classify/strided_slice/strides", np.array([1], np.int32))
    batch = g.node(
        "classify/strided_slice",
        "StridedSlice",
        [shape, start, stop, step],
        T=DType(int32),
        Index=DType(int32),
        shrink_axis_mask=1,
    )
    one = g.const("classify/one", np.array(1, np.int32))
    multiples = g.node("classify/multiples", "Pack", [batch, one], T=DType(int32), N=2)
    table = g.const(
        "classify/labels", np.array([[s.encode() for s in labels]], dtype=object), types_pb2.DT_STRING
    )
    return g.node(
        "classify/classes", "Tile", [table, multiples], T=DType(types_pb2.DT_STRING), Tmultiples=DType(int32)
    )


def build_dense_meta_graph(
    layers: Sequence[DenseLayer],
    *,
    input_key: str = "x",
    output_key: str = "y",
    classify: bool = False,
    class_labels: Sequence[str] | None = None,
    regress: bool = False,
) -> tuple[meta_graph_pb2.MetaGraphDef, dict[str, np.ndarray]]:
    """The serving meta graph (without tags) and the variables its restore op loads."""
    _check_layers(layers)
    n_in, n_out = layers[0].kernel.shape[0], layers[-1].kernel.shape[1]
    if regress and n_out != 1:
        raise ValueError(f"a regress signature needs one output unit, the model has {n_out}")
    if class_labels is not None and len(class_labels) != n_out:
        raise ValueError(f"{len(class_labels)} class labels for {n_out} outputs")
    g = GraphBuilder()
    meta = meta_graph_pb2.MetaGraphDef()
    x = g.node(input_key, "Placeholder", dtype=DType(FLOAT), shape=Shape([-1, n_in]))
    variables: list[Variable] = []
    values: dict[str, np.ndarray] = {}
    pairs: list[tuple[str, str]] = []
    for i, layer in enumerate(layers):
        scope = "dense" + (f"_{i}" if i else "")
        names = []
        for kind, value in (("kernel", layer.kernel), ("bias", layer.bias)):
            var, definition = resource_variable(g, f"{scope}/{kind}", FLOAT, np.shape(value))
            variables.append(var)
            values[var.name] = np.asarray(value, dtype=np.float32)
            names.append(var.name)
            for collection in ("variables", "trainable_variables"):
                meta.collection_def[collection].bytes_list.value.append(definition.SerializeToString())
        pairs.append((names[0], names[1]))
    out = g.node(output_key, "Identity", [_stack(g, "", x, layers, pairs)], T=DType(FLOAT))
    predict = meta.signature_def["serving_default"]
    predict.method_name = PREDICT_METHOD
    predict.inputs[input_key].CopyFrom(_info(f"{x}:0", FLOAT, [-1, n_in]))
    predict.outputs[output_key].CopyFrom(_info(f"{out}:0", FLOAT, [-1, n_out]))
    if classify or regress:
        serialized, features = _parse_examples(g, input_key, n_in)
        examples_out = _stack(g, "examples/", features, layers, pairs)
        if classify:
            sig = meta.signature_def["classify"]
            sig.method_name = CLASSIFY_METHOD
            sig.inputs["inputs"].CopyFrom(_info(f"{serialized}:0", types_pb2.DT_STRING, [-1]))
            scores = g.node("classify/scores", "Identity", [examples_out], T=DType(FLOAT))
            sig.outputs["scores"].CopyFrom(_info(f"{scores}:0", FLOAT, [-1, n_out]))
            if class_labels is not None:
                classes = _tile_labels(g, scores, class_labels)
                sig.outputs["classes"].CopyFrom(_info(f"{classes}:0", types_pb2.DT_STRING, [-1, n_out]))
        if regress:
            flat = g.const("regress/shape", np.array([-1], np.int32))
            outputs = g.node(
                "regress/outputs",
                "Reshape",
                [examples_out, flat],
                T=DType(FLOAT),
                Tshape=DType(types_pb2.DT_INT32),
            )
            sig = meta.signature_def["regress"]
            sig.method_name = REGRESS_METHOD
            sig.inputs["inputs"].CopyFrom(_info(f"{serialized}:0", types_pb2.DT_STRING, [-1]))
            sig.outputs["outputs"].CopyFrom(_info(f"{outputs}:0", FLOAT, [-1]))
    meta.saver_def.CopyFrom(add_saver(g, variables))
    meta.graph_def.CopyFrom(g.graph)
    return meta, values


def export_dense_model(
    url: str,
    layers: Sequence[DenseLayer],
    *,
    input_key: str = "x",
    output_key: str = "y",
    classify: bool = False,
    class_labels: Sequence[str] | None = None,
    regress: bool = False,
    tags: Sequence[str] = ("serve",),
    strip_default_attrs: bool = True,
    storage_options: dict[str, Any] | None = None,
    fs: Any = None,
) -> str:
    """Write the dense network as a SavedModel at ``url`` (which must not exist or be empty)."""
    meta, values = build_dense_meta_graph(
        layers,
        input_key=input_key,
        output_key=output_key,
        classify=classify,
        class_labels=class_labels,
        regress=regress,
    )
    builder = SavedModelBuilder(url, storage_options, fs)
    builder.add_meta_graph_and_variables(
        tags, meta, variables=values, strip_default_attrs=strip_default_attrs
    )
    return builder.save()
