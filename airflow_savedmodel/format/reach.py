"""What a loader actually runs: the nodes an op depends on and the library functions they call.

TensorFlow's loaders never run a SavedModel's graph whole. TF Serving's (TF1 session) loader
places every node of the graph, then runs the saver's restore op and the init op; signatures run
at request time, and a library function is instantiated only when a node calls it. So an
``__inference__traced_restore_*`` function nothing calls is never consulted, and an asset whose
tensor no op reads is never opened. Restore analysis, kernel checks and asset checks follow
these paths instead of every NodeDef in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from airflow_savedmodel.format import opdefs
from airflow_savedmodel.protos import graph_pb2, meta_graph_pb2


def called(node: graph_pb2.NodeDef, functions: Iterable[str] = ()) -> Iterator[str]:
    """Names of the functions ``node`` calls: its op when the op is a library function (pass the
    library's names as ``functions``), and every function-valued attr (``f``, branches, bodies):
    those its OpDef declares, or every attr of an op no shipped registry knows."""
    if node.op in functions:
        yield node.op
    declared = opdefs.function_attrs().get(node.op)
    values = node.attr.values() if declared is None else [node.attr[n] for n in declared if n in node.attr]
    for value in values:
        if value.HasField("func"):
            yield value.func.name
        for func in value.list.func:
            yield func.name


def functions_called(graph: graph_pb2.GraphDef, nodes: Iterable[graph_pb2.NodeDef]) -> set[str]:
    """Library functions ``nodes`` call, transitively through the bodies of those functions."""
    library = {f.signature.name: f for f in graph.library.function}
    pending = [name for node in nodes for name in called(node, library)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        pending += [callee for node in library[name].node_def for callee in called(node, library)]
    return seen


def node_name(tensor_or_input: str) -> str:
    """``"^a"``, ``"a:1"`` or ``"a"`` -> ``"a"``."""
    return tensor_or_input.lstrip("^").split(":", 1)[0]


def tensor_names(info: meta_graph_pb2.TensorInfo) -> list[str]:
    """Every graph tensor a signature entry names (dense, sparse parts, composite components)."""
    encoding = info.WhichOneof("encoding")
    if encoding == "name":
        return [info.name]
    if encoding == "coo_sparse":
        coo = info.coo_sparse
        return [coo.values_tensor_name, coo.indices_tensor_name, coo.dense_shape_tensor_name]
    if encoding == "composite_tensor":
        return [n for component in info.composite_tensor.components for n in tensor_names(component)]
    return []


def upstream(
    graph: graph_pb2.GraphDef, roots: Iterable[str], fed: Iterable[str] = ()
) -> list[graph_pb2.NodeDef]:
    """The main graph's nodes that running ``roots`` (node or tensor names) runs: the roots and
    everything they depend on through data and control inputs, except above the ``fed`` nodes
    (a session fed a tensor does not compute it)."""
    nodes = {n.name: n for n in graph.node}
    cut = {node_name(f) for f in fed}
    pending = [node_name(r) for r in roots if r]
    seen: dict[str, graph_pb2.NodeDef] = {}
    while pending:
        name = pending.pop()
        if name in seen or name not in nodes:
            continue
        seen[name] = nodes[name]
        if name not in cut:
            pending += [node_name(i) for i in nodes[name].input]
    return list(seen.values())


def restore_path(mg: meta_graph_pb2.MetaGraphDef) -> tuple[list[graph_pb2.NodeDef], set[str]]:
    """What the TF1 session loader (TF Serving's) runs to restore variables: the saver's restore
    op with everything it depends on, and the library functions those nodes call (a TF2 export's
    restore op calls its ``__inference__traced_restore`` function). Empty without a saver."""
    if not mg.saver_def.restore_op_name:
        return [], set()
    nodes = upstream(mg.graph_def, [mg.saver_def.restore_op_name])
    return nodes, functions_called(mg.graph_def, nodes)


# Collections whose ops a TF1 loader runs after the restore when no init signature names one.
INIT_OP_COLLECTIONS = ("saved_model_main_op", "legacy_init_op")


def served(mg: meta_graph_pb2.MetaGraphDef) -> list[graph_pb2.NodeDef]:
    """The main graph's nodes that loading and serving can run: the saver's restore, the init
    op (the ``__saved_model_init_op`` signature, else the main or legacy init op collection),
    and every signature's outputs with its inputs fed. A node outside this set is placed but
    never executed by TF Serving's loader or any request it answers."""
    roots = [mg.saver_def.restore_op_name]
    for key in INIT_OP_COLLECTIONS:
        roots += list(mg.collection_def[key].node_list.value) if key in mg.collection_def else []
    found = {node.name: node for node in upstream(mg.graph_def, roots)}
    for signature in mg.signature_def.values():  # each request feeds its own signature's inputs
        outputs = [name for info in signature.outputs.values() for name in tensor_names(info)]
        fed = [name for info in signature.inputs.values() for name in tensor_names(info)]
        found.update((node.name, node) for node in upstream(mg.graph_def, outputs, fed))
    return list(found.values())


def saver_functions(mg: meta_graph_pb2.MetaGraphDef) -> set[str]:
    """Functions the saver's save and restore ops call, transitively."""
    nodes = {n.name: n for n in mg.graph_def.node}
    roots = [mg.saver_def.restore_op_name, node_name(mg.saver_def.save_tensor_name)]
    return functions_called(mg.graph_def, [nodes[r] for r in roots if r in nodes])


def placed(mg: meta_graph_pb2.MetaGraphDef) -> Iterator[tuple[str | None, graph_pb2.NodeDef]]:
    """``(function or None, node)`` for every node a serving loader places or may instantiate:
    the whole main graph (the session places it whole when it is created), and the bodies of the
    functions its nodes call; functions nothing calls are left out."""
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    for node in mg.graph_def.node:
        if node.op not in library:
            yield None, node
    for name in sorted(functions_called(mg.graph_def, mg.graph_def.node)):
        for node in library[name].node_def:
            if node.op not in library:
                yield name, node
