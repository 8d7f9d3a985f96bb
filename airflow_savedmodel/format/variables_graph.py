"""TF1-style resource variables in a GraphDef and the Saver subgraph that restores them.

TensorFlow's SavedModel loaders restore variables by feeding the variables prefix to
``saver_def.filename_tensor_name`` and running ``saver_def.restore_op_name``; this module
emits those nodes (RestoreV2 then AssignVariableOp per variable) and a matching save path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from airflow_savedmodel.format.graphdef import DType, GraphBuilder, Shape, StringList, TypeList
from airflow_savedmodel.protos import meta_graph_pb2, types_pb2, variable_pb2


@dataclass(frozen=True)
class Variable:
    name: str  # the VarHandleOp node name, also the checkpoint key
    dtype: int
    shape: tuple[int, ...]
    read: str  # a ReadVariableOp node reading it, for the save path


def resource_variable(
    g: GraphBuilder, name: str, dtype: int, shape: Sequence[int], trainable: bool = True
) -> tuple[Variable, variable_pb2.VariableDef]:
    """A VarHandleOp with a zero initializer and a read; its value comes from the checkpoint on load."""
    init = g.fill_const(f"{name}/Initializer/zeros", shape, 0.0, dtype)
    g.node(
        name,
        "VarHandleOp",
        dtype=DType(dtype),
        shape=Shape(shape),
        shared_name=name,
        _class=StringList([f"loc:@{name}"]),
    )
    g.node(f"{name}/IsInitialized/VarIsInitializedOp", "VarIsInitializedOp", [name])
    g.node(f"{name}/Assign", "AssignVariableOp", [name, init], dtype=DType(dtype))
    read = g.node(f"{name}/Read/ReadVariableOp", "ReadVariableOp", [name], dtype=DType(dtype))
    definition = variable_pb2.VariableDef(
        variable_name=f"{name}:0",
        initial_value_name=f"{init}:0",
        initializer_name=f"{name}/Assign",
        snapshot_name=f"{read}:0",
        is_resource=True,
        trainable=trainable,
    )
    return Variable(name, dtype, tuple(shape), read), definition


def add_saver(g: GraphBuilder, variables: Sequence[Variable], scope: str = "save") -> meta_graph_pb2.SaverDef:
    """Save and restore nodes for ``variables`` (checkpoint keys = variable names); returns the SaverDef."""
    ordered = sorted(variables, key=lambda v: v.name)
    names = np.array([v.name.encode() for v in ordered], dtype=object)
    slices = np.array([b""] * len(ordered), dtype=object)
    types = TypeList(v.dtype for v in ordered)
    g.const(f"{scope}/filename/input", np.array(b"model", dtype=object), types_pb2.DT_STRING)
    g.node(
        f"{scope}/filename",
        "PlaceholderWithDefault",
        [f"{scope}/filename/input"],
        dtype=DType(types_pb2.DT_STRING),
        shape=Shape([]),
    )
    prefix = g.node(
        f"{scope}/Const",
        "PlaceholderWithDefault",
        [f"{scope}/filename"],
        dtype=DType(types_pb2.DT_STRING),
        shape=Shape([]),
    )
    save_names = g.const(f"{scope}/SaveV2/tensor_names", names, types_pb2.DT_STRING)
    save_slices = g.const(f"{scope}/SaveV2/shape_and_slices", slices, types_pb2.DT_STRING)
    g.node(
        f"{scope}/SaveV2",
        "SaveV2",
        [prefix, save_names, save_slices, *(v.read for v in ordered)],
        dtypes=types,
    )
    g.node(
        f"{scope}/control_dependency", "Identity", [prefix, f"^{scope}/SaveV2"], T=DType(types_pb2.DT_STRING)
    )
    restore_names = g.const(f"{scope}/RestoreV2/tensor_names", names, types_pb2.DT_STRING)
    restore_slices = g.const(f"{scope}/RestoreV2/shape_and_slices", slices, types_pb2.DT_STRING)
    g.node(f"{scope}/RestoreV2", "RestoreV2", [prefix, restore_names, restore_slices], dtypes=types)
    assigns = []
    for i, v in enumerate(ordered):
        suffix = f"_{i}" if i else ""
        value = g.node(f"{scope}/Identity{suffix}", "Identity", [f"{scope}/RestoreV2:{i}"], T=DType(v.dtype))
        assigns.append(
            g.node(
                f"{scope}/AssignVariableOp{suffix}", "AssignVariableOp", [v.name, value], dtype=DType(v.dtype)
            )
        )
    g.node(f"{scope}/restore_all", "NoOp", [f"^{a}" for a in assigns])
    return meta_graph_pb2.SaverDef(
        filename_tensor_name=f"{prefix}:0",
        save_tensor_name=f"{scope}/control_dependency:0",
        restore_op_name=f"{scope}/restore_all",
        max_to_keep=5,
        keep_checkpoint_every_n_hours=10000.0,
        version=meta_graph_pb2.SaverDef.V2,
    )
