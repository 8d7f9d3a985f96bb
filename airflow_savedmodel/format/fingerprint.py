"""fingerprint.pb computed as TensorFlow computes it (FarmHash Fingerprint64 over canonical parts).

Five hashes over the first meta graph: the whole SavedModel's bytes, the graph with function
UIDs, config protos, string constants, library and versions regularized away, the signatures,
the object graph's concrete functions, and the raw variables index.
"""

from __future__ import annotations

import uuid as uuid_module

import farmhash

from airflow_savedmodel.format import canonical
from airflow_savedmodel.protos import fingerprint_pb2, graph_pb2, meta_graph_pb2, types_pb2

_MUL = 0xC6A4A7935BD1E995
_U64 = 0xFFFFFFFFFFFFFFFF
# The five hashes of fingerprint.pb, in field order.
HASH_FIELDS = (
    "saved_model_checksum",
    "graph_def_program_hash",
    "signature_def_hash",
    "saved_object_graph_hash",
    "checkpoint_hash",
)
# The fingerprint.pb version TensorFlow 2.21 stamps on what this algorithm computes.
PRODUCER = 4


def fingerprint64(data: bytes) -> int:
    return int(farmhash.fingerprint64(data))


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def cat64(first: int, second: int) -> int:
    """TensorFlow's FingerprintCat64: an order-dependent combination of two fingerprints."""
    result = first ^ _MUL
    result ^= (_shift_mix((second * _MUL) & _U64) * _MUL) & _U64
    result = (result * _MUL) & _U64
    result = (_shift_mix(result) * _MUL) & _U64
    return _shift_mix(result)


def _suffix_uid(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1]
    try:
        value = int(tail.strip())
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


def _strip_uid(name: str) -> str:
    uid = _suffix_uid(name)
    if uid is None:
        return name
    suffix = str(uid)
    return name[: -len(suffix)] if name.endswith(suffix) else name


def regularized_graph(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """The graph as TensorFlow hashes it for graph_def_program_hash."""
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph)
    for node in copy.node:
        if node.op in ("PartitionedCall", "StatefulPartitionedCall"):
            if "f" in node.attr:
                node.attr["f"].func.name = _strip_uid(node.attr["f"].func.name)
            if "config_proto" in node.attr:
                node.attr["config_proto"].s = b""
        is_string_const = (
            node.op == "Const" and "dtype" in node.attr and node.attr["dtype"].type == types_pb2.DT_STRING
        )
        if is_string_const and "value" in node.attr:
            node.attr["value"].Clear()
    copy.library.Clear()
    copy.library.SetInParent()
    copy.versions.Clear()
    copy.versions.SetInParent()
    return copy


def graph_def_program_hash(graph: graph_pb2.GraphDef) -> int:
    return fingerprint64(canonical.serialize(regularized_graph(graph)))


def signature_def_hash(meta_graph: meta_graph_pb2.MetaGraphDef) -> int:
    result = 0
    for key in sorted(meta_graph.signature_def):
        result = cat64(result, fingerprint64(key.encode()))
        result = cat64(result, fingerprint64(canonical.serialize(meta_graph.signature_def[key])))
    return result


def saved_object_graph_hash(meta_graph: meta_graph_pb2.MetaGraphDef) -> int:
    functions = meta_graph.object_graph_def.concrete_functions
    result = 0
    for name in sorted(functions, key=lambda n: _suffix_uid(n) or 0):
        result = cat64(result, fingerprint64(_strip_uid(name).encode()))
        result = cat64(result, fingerprint64(canonical.serialize(functions[name])))
    return result


def compute(
    saved_model: meta_graph_pb2.SavedModel, index_bytes: bytes | None
) -> fingerprint_pb2.FingerprintDef:
    """The FingerprintDef for a SavedModel and its variables.index bytes (None when it has no variables)."""
    fp = fingerprint_pb2.FingerprintDef()
    fp.saved_model_checksum = fingerprint64(canonical.serialize(saved_model))
    if saved_model.meta_graphs:
        first = saved_model.meta_graphs[0]
        fp.graph_def_program_hash = graph_def_program_hash(first.graph_def)
        fp.signature_def_hash = signature_def_hash(first)
        fp.saved_object_graph_hash = saved_object_graph_hash(first)
    fp.checkpoint_hash = fingerprint64(index_bytes) if index_bytes is not None else 0
    fp.version.producer = PRODUCER
    fp.uuid = str(uuid_module.uuid4().int)
    return fp
