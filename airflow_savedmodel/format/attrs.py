"""Graph rewrites on a MetaGraphDef: strip or restore default-valued attrs, clear devices.

A node attr equal to its OpDef's default can be dropped without changing the graph; newer
TensorFlow releases add attrs with defaults, so dropping them keeps a model loadable by an
older serving binary. OpDefs come from the meta graph's own ``stripped_op_list`` (the
producer's registry), then from the registry shipped for a TensorFlow release.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_savedmodel.format import opdefs, tensor_proto
from airflow_savedmodel.protos import graph_pb2, meta_graph_pb2, types_pb2

OpRegistry = Mapping[str, graph_pb2.OpDef]


@dataclass(frozen=True)
class RewriteStats:
    nodes: int
    changed: int  # attrs removed or added, or devices cleared
    unknown_ops: tuple[str, ...] = ()


def attr_equal(a: graph_pb2.AttrValue, b: graph_pb2.AttrValue) -> bool:
    """TensorFlow's AttrValue equality: types directly, tensors by value, functions recursively."""
    if a.type != b.type:
        return False
    if a.type != types_pb2.DT_INVALID:
        return True
    if a.HasField("tensor") != b.HasField("tensor"):
        return False
    if a.HasField("tensor"):
        return tensor_proto.equal(a.tensor, b.tensor)
    if a.HasField("func") != b.HasField("func"):
        return False
    if a.HasField("func"):
        if a.func.name != b.func.name or len(a.func.attr) != len(b.func.attr):
            return False
        return all(k in a.func.attr and attr_equal(a.func.attr[k], v) for k, v in b.func.attr.items())
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def registry_for(
    meta_graph: meta_graph_pb2.MetaGraphDef, release: str | None = None
) -> dict[str, graph_pb2.OpDef]:
    """OpDefs for a meta graph: its stripped_op_list first, then the shipped registry of ``release``."""
    ops: dict[str, graph_pb2.OpDef] = dict(opdefs.registry(release))
    ops.update({op.name: op for op in meta_graph.meta_info_def.stripped_op_list.op})
    return ops


def op_nodes(graph: graph_pb2.GraphDef) -> Iterator[graph_pb2.NodeDef]:
    """Every NodeDef of the graph and its function library that calls an op, not a library function."""
    functions = {f.signature.name for f in graph.library.function}
    for node in graph.node:
        if node.op not in functions:
            yield node
    for function in graph.library.function:
        for node in function.node_def:
            if node.op not in functions:
                yield node


def default_value(op_def: graph_pb2.OpDef, name: str) -> graph_pb2.AttrValue | None:
    """The OpDef's default for attr ``name``, or None when the attr has no default (or does not exist)."""
    for attr_def in op_def.attr:
        if attr_def.name == name and attr_def.HasField("default_value"):
            return attr_def.default_value
    return None


class _Defaults:
    """Per-op default attr values with their serialized bytes, built once per registry."""

    def __init__(self, registry: OpRegistry) -> None:
        self.registry = registry
        self.cache: dict[str, dict[str, tuple[graph_pb2.AttrValue, bytes]] | None] = {}

    def of(self, op: str) -> dict[str, tuple[graph_pb2.AttrValue, bytes]] | None:
        if op not in self.cache:
            op_def = self.registry.get(op)
            self.cache[op] = (
                None
                if op_def is None
                else {
                    a.name: (a.default_value, a.default_value.SerializeToString(deterministic=True))
                    for a in op_def.attr
                    if a.HasField("default_value")
                }
            )
        return self.cache[op]


def _equals_default(value: graph_pb2.AttrValue, default: tuple[graph_pb2.AttrValue, bytes]) -> bool:
    if value.SerializeToString(deterministic=True) == default[1]:
        return True
    kind = value.WhichOneof("value")
    return kind in ("tensor", "func") and attr_equal(value, default[0])


def _rewrite(
    meta_graph: meta_graph_pb2.MetaGraphDef,
    lookup: Callable[[str], Any],
    change: Callable[[graph_pb2.NodeDef, Any], int],
) -> RewriteStats:
    """Apply ``change(node, lookup(node.op))`` to every op node whose op is known; count and collect."""
    nodes = changed = 0
    unknown: set[str] = set()
    for node in op_nodes(meta_graph.graph_def):
        nodes += 1
        found = lookup(node.op)
        if found is None:
            unknown.add(node.op)
            continue
        changed += change(node, found)
    return RewriteStats(nodes, changed, tuple(sorted(unknown)))


def strip_default_attrs(
    meta_graph: meta_graph_pb2.MetaGraphDef, registry: OpRegistry | None = None
) -> RewriteStats:
    """Remove, in place, every node attr whose value equals its OpDef default; mark the meta graph stripped."""
    defaults = _Defaults(registry if registry is not None else registry_for(meta_graph))

    def strip(node: graph_pb2.NodeDef, table: dict[str, tuple[graph_pb2.AttrValue, bytes]]) -> int:
        if not table:
            return 0
        attr = node.attr
        # an op declares few defaults: look those up rather than walk every attr of the node
        names = [n for n, default in table.items() if n in attr and _equals_default(attr[n], default)]
        for name in names:
            del node.attr[name]
        return len(names)

    stats = _rewrite(meta_graph, defaults.of, strip)
    meta_graph.meta_info_def.stripped_default_attrs = True
    return stats


def target_registry(
    meta_graph: meta_graph_pb2.MetaGraphDef, release: str | None = None
) -> dict[str, graph_pb2.OpDef]:
    """OpDefs as the release that loads the graph sees them: the shipped registry of ``release``
    (default: the newest) first, then the meta graph's stripped_op_list for ops it lacks."""
    ops = {op.name: op for op in meta_graph.meta_info_def.stripped_op_list.op}
    ops.update(opdefs.registry(release))
    return ops


def add_default_attrs(
    meta_graph: meta_graph_pb2.MetaGraphDef, registry: OpRegistry | None = None, release: str | None = None
) -> RewriteStats:
    """Add, in place, every attr default a node lacks, as TensorFlow ``release``'s importer does on
    load (default: the newest shipped): its own OpDefs' defaults, not the producer's."""
    ops = registry if registry is not None else target_registry(meta_graph, release)

    def add(node: graph_pb2.NodeDef, op_def: graph_pb2.OpDef) -> int:
        added = 0
        for attr_def in op_def.attr:
            if attr_def.HasField("default_value") and attr_def.name not in node.attr:
                node.attr[attr_def.name].CopyFrom(attr_def.default_value)
                added += 1
        return added

    stats = _rewrite(meta_graph, ops.get, add)
    meta_graph.meta_info_def.stripped_default_attrs = False
    return stats


def clear_devices(meta_graph: meta_graph_pb2.MetaGraphDef) -> RewriteStats:
    """Drop, in place, every node's device placement (graph and functions), as clear_devices=True does."""
    nodes = cleared = 0
    for node in [
        *meta_graph.graph_def.node,
        *(n for f in meta_graph.graph_def.library.function for n in f.node_def),
    ]:
        nodes += 1
        if node.device:
            node.device = ""
            cleared += 1
    return RewriteStats(nodes, cleared)
