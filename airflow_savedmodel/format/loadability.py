"""Whether a TensorFlow release can load and serve a meta graph on a device type, and why not.

Follows what TF Serving's (TF1 session) loader does, with the release's shipped registries
(format/opdefs): the session places every node of the graph and instantiates the functions its
nodes call (format/reach.py), so each of those nodes needs an op the release registers, attrs
it knows, and a kernel for the server's device type whose constraints the node's attrs meet; a
node pinned to a device the server lacks cannot be placed; the GraphDef's version stamp must
fall within the release's range. Each reason is a :class:`Problem` with validate's finding code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_savedmodel.format import attrs, dtypes, opdefs, reach
from airflow_savedmodel.protos import graph_pb2, kernel_def_pb2, meta_graph_pb2

DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class Problem:
    """One reason a release cannot load (or serve) the graph; ``count`` nodes share it."""

    code: str
    message: str
    reason: str  # a few words for the release range ("no CPU kernel for BoostedTreesBucketize")
    fix: str | None = None
    count: int = 1


def _value_key(value: graph_pb2.AttrValue | None) -> object:
    """A hashable stand-in for an attr value as kernel constraints see it."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "list":
        return ("list", tuple(value.list.type), tuple(value.list.i), tuple(value.list.s), tuple(value.list.b))
    return (kind, getattr(value, kind)) if kind in ("type", "i", "s", "b") else (kind,)


def _allowed(value: graph_pb2.AttrValue, allowed: graph_pb2.AttrValue) -> bool:
    """Whether an attr value meets a kernel constraint (the allowed values are a list)."""
    options = allowed.list
    if value.WhichOneof("value") == "type":
        return value.type in options.type
    if value.WhichOneof("value") == "list" and value.list.type:
        return all(t in options.type for t in value.list.type)
    if value.WhichOneof("value") == "i" and options.i:
        return value.i in options.i
    if value.WhichOneof("value") == "s" and options.s:
        return value.s in options.s
    if value.WhichOneof("value") == "b" and options.b:
        return value.b in options.b
    return not (options.type or options.i or options.s or options.b)


def kernel_matches(kernel: kernel_def_pb2.KernelDef, values: dict[str, graph_pb2.AttrValue]) -> bool:
    """TensorFlow's kernel choice: every constrained attr present and among the allowed values."""
    for constraint in kernel.constraint:
        value = values.get(constraint.name)
        if value is None or not _allowed(value, constraint.allowed_values):
            return False
    return True


def _device_types(device: str, node: graph_pb2.NodeDef) -> tuple[str, ...]:
    """Device types whose kernels can run ``node`` on a server with ``device``: a GPU server
    places a node without a GPU kernel on its CPU, unless the node is pinned to the GPU."""
    if device == "gpu":
        return ("GPU",) if "GPU" in node.device.upper() else ("GPU", "CPU")
    return ("CPU",)  # a TPU server runs all but its TPU-compiled calls on CPU


def _describe_types(values: dict[str, graph_pb2.AttrValue], kernels: list[kernel_def_pb2.KernelDef]) -> str:
    names = sorted({c.name for k in kernels for c in k.constraint})
    shown = []
    for name in names:
        value = values.get(name)
        if value is not None and value.WhichOneof("value") == "type":
            shown.append(f"{name}={dtypes.name(value.type)}")
    return ", ".join(shown)


def problems(
    mg: meta_graph_pb2.MetaGraphDef,
    release: str | None = None,
    device: str = "cpu",
    placed: list[tuple[str | None, graph_pb2.NodeDef]] | None = None,
) -> list[Problem]:
    """Why TensorFlow ``release`` (default: the newest shipped) cannot serve ``mg`` on a ``device``
    ("cpu" or "gpu") server; empty when it can. ``placed``: ``list(reach.placed(mg))``, when
    the caller asks about several releases."""
    release = opdefs.normalize(release) if release else opdefs.latest()
    target = opdefs.registry(release)
    kernels = opdefs.kernels(release)
    constrained_by = opdefs.constrained_attrs(release)
    producer = attrs.registry_for(mg)
    found: list[Problem] = _versions(mg.graph_def, release)
    unknown_ops: dict[str, int] = {}
    unknown_attrs: dict[tuple[str, str, bool], int] = {}
    no_kernel: dict[tuple[str, str, str], int] = {}
    pinned: dict[str, list[str]] = {}
    # Graphs repeat a few ops with a few type combinations thousands of times: each op's known
    # attrs and constrained attrs are worked out once, and each distinct (op, device, label,
    # constrained values) is matched against the kernels once.
    ops: dict[str, tuple[set[str], tuple[str, ...], dict[str, graph_pb2.AttrValue]]] = {}
    matched: dict[tuple[object, ...], tuple[bool, str]] = {}
    for function, node in reach.placed(mg) if placed is None else placed:
        pin = node.device.upper()
        if pin and (
            (device == "cpu" and ("GPU" in pin or "TPU" in pin))
            or (device != "tpu" and "TPU" in pin)
            or (device == "tpu" and "GPU" in pin)
        ):
            pinned.setdefault(node.device, []).append(f"{function}/{node.name}" if function else node.name)
        op_def = target.get(node.op)
        if op_def is None:
            unknown_ops[node.op] = unknown_ops.get(node.op, 0) + 1
            continue
        if node.op not in ops:
            constrained = constrained_by.get(node.op, ())
            defaults = {a.name: a.default_value for a in op_def.attr if a.HasField("default_value")}
            ops[node.op] = ({a.name for a in op_def.attr}, constrained, defaults)
        known, constrained, defaults = ops[node.op]
        for name in node.attr:
            if name.startswith("_") or name in known:
                continue
            default = attrs.default_value(producer[node.op], name) if node.op in producer else None
            fixable = default is not None and attrs.attr_equal(node.attr[name], default)
            unknown_attrs[(node.op, name, fixable)] = unknown_attrs.get((node.op, name, fixable), 0) + 1
        if device == "tpu" and "TPU" in pin:
            continue  # TPU kernels are not in the shipped registries
        label = node.attr["_kernel"].s.decode("utf-8", "replace") if "_kernel" in node.attr else ""
        types = _device_types(device, node)
        values = {n: node.attr[n] if n in node.attr else defaults.get(n) for n in constrained}
        key = (node.op, types, label, *(_value_key(v) for v in values.values()))
        if key not in matched:
            candidates = [
                k
                for k in kernels.get(node.op, [])
                if k.device_type in (*types, "DEFAULT") and k.label == label
            ]
            present = {n: v for n, v in values.items() if v is not None}
            ok = any(kernel_matches(k, present) for k in candidates)
            matched[key] = (ok, "" if ok or not candidates else _describe_types(present, candidates))
        ok, detail = matched[key]
        if not ok:
            problem = (node.op, " or ".join(types), detail)
            no_kernel[problem] = no_kernel.get(problem, 0) + 1
    for op, count in sorted(unknown_ops.items()):
        found.append(
            Problem(
                "op-unknown-in-target",
                f"op {op} ({count} nodes) is not registered in TensorFlow {release}",
                f"op {op} not registered",
                count=count,
            )
        )
    for (op, name, fixable), count in sorted(unknown_attrs.items()):
        if fixable:
            found.append(
                Problem(
                    "attr-default-unknown-in-target",
                    f"{op}.{name} ({count} nodes) carries its default value but TensorFlow {release} "
                    "does not know the attr",
                    f"attr {op}.{name} unknown (strip fixes it)",
                    fix="strip_default_attrs",
                    count=count,
                )
            )
        else:
            found.append(
                Problem(
                    "attr-unknown-in-target",
                    f"{op}.{name} ({count} nodes) is set to a non-default value and TensorFlow {release} "
                    "does not know the attr",
                    f"attr {op}.{name} unknown",
                    count=count,
                )
            )
    for (op, on, detail), count in sorted(no_kernel.items()):
        what = f" for {detail}" if detail else ""
        found.append(
            Problem(
                "op-no-kernel",
                f"op {op} ({count} nodes) has no {on} kernel{what} in TensorFlow {release} "
                '("No OpKernel was registered to support Op")',
                f"no {on} kernel for {op}{what}",
                count=count,
            )
        )
    for pinned_to, nodes in sorted(pinned.items()):
        shown = ", ".join(repr(n) for n in nodes[:3]) + (
            f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        )
        found.append(
            Problem(
                "device-pinned-accelerator",
                f"{len(nodes)} nodes are pinned to {pinned_to}, which a {device.upper()} server lacks: {shown}",
                f"nodes pinned to {pinned_to}",
                fix="clear_devices",
                count=len(nodes),
            )
        )
    return found


def _versions(graph: graph_pb2.GraphDef, release: str) -> list[Problem]:
    version, min_producer = opdefs.graph_versions(release)
    stamp = graph.versions
    why = None
    if stamp.min_consumer > version:
        why = f"needs a consumer of GraphDef version {stamp.min_consumer} or newer; TensorFlow {release} is {version}"
    elif stamp.producer < min_producer:
        why = f"was produced at GraphDef version {stamp.producer}, older than {release}'s oldest, {min_producer}"
    elif version in stamp.bad_consumers:
        why = f"lists TensorFlow {release}'s GraphDef version {version} among its bad consumers"
    if why is None:
        return []
    return [Problem("graph-version-unsupported", f"the graph {why}", "GraphDef version out of range")]


def serving_range(verdicts: Iterable[tuple[str, bool]]) -> str:
    """``"2.15-2.21"`` for the releases that can serve, as runs (``"2.12-2.13, 2.16"``), or ``"none"``."""
    runs: list[list[str]] = []
    previous_ok = False
    for release, ok in verdicts:
        if ok and previous_ok:
            runs[-1].append(release)
        elif ok:
            runs.append([release])
        previous_ok = ok
    if not runs:
        return "none"
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
