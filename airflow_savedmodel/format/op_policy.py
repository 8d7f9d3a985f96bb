"""Which ops a served model may run: a scan for ops that read or write files, run Python, reach
the network or dump debug data, in the graph and every function, against an allow/deny policy.

saved_model_cli refuses three ops (ReadFile, WriteFile, PrintV2) before ``run``; a model server
loading untrusted models needs the families those stand for. The checkpoint ops of the model's
own saver (the main graph's ``save/`` scope in TF1, the functions its saver_def calls in TF2)
are how variables are restored and are not flagged; checkpoint ops nothing the loader or a
request runs can reach (a training ``tf.train.Saver`` left in a TF1 graph beside the builder's)
are never run and are not flagged either. Every other family is flagged wherever it is placed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format import reach
from airflow_savedmodel.protos import meta_graph_pb2

# family -> (finding code, what it means, ops)
FAMILIES: dict[str, tuple[str, str, frozenset[str]]] = {
    "file-read": (
        "op-reads-files",
        "reads files named by the graph or its inputs",
        frozenset(
            {
                "ReadFile",
                "MatchingFiles",
                "ImmutableConst",
                "WholeFileReader",
                "WholeFileReaderV2",
                "TextLineReader",
                "TextLineReaderV2",
                "TFRecordReader",
                "TFRecordReaderV2",
                "FixedLengthRecordReader",
                "FixedLengthRecordReaderV2",
                "LMDBReader",
                "TFRecordDataset",
                "TFRecordDatasetV2",
                "TextLineDataset",
                "FixedLengthRecordDataset",
                "FixedLengthRecordDatasetV2",
                "MatchingFilesDataset",
                "ExperimentalMatchingFilesDataset",
                "LoadDataset",
                "ExperimentalLMDBDataset",
                "LMDBDataset",
                "Restore",
                "RestoreV2",
                "RestoreSlice",
                "ImportEvent",
            }
        ),
    ),
    "file-write": (
        "op-writes-files",
        "writes files",
        frozenset(
            {
                "WriteFile",
                "Save",
                "SaveV2",
                "SaveSlices",
                "MergeV2Checkpoints",
                "SaveDataset",
                "SaveDatasetV2",
                "SnapshotDataset",
                "SnapshotDatasetV2",
                "ExperimentalSnapshotDataset",
                "CacheDatasetV2",
                "DistributedSave",
                "CreateSummaryFileWriter",
                "CreateSummaryDbWriter",
                "WriteSummary",
                "WriteRawProtoSummary",
                "WriteScalarSummary",
                "WriteHistogramSummary",
                "WriteImageSummary",
                "WriteAudioSummary",
                "WriteGraphSummary",
                "FlushSummaryWriter",
                "CloseSummaryWriter",
            }
        ),
    ),
    "python": (
        "op-runs-python",
        "calls back into Python (TensorFlow Serving has no Python to call)",
        frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"}),
    ),
    "network": (
        "op-reaches-network",
        "connects to other servers",
        frozenset(
            {
                "Rpc",
                "TryRpc",
                "RpcClient",
                "RpcCall",
                "RpcServer",
                "RpcServerStart",
                "RpcServerRegister",
                "RpcCheckStatus",
                "RpcGetValue",
                "DataServiceDataset",
                "DataServiceDatasetV2",
                "DataServiceDatasetV3",
                "DataServiceDatasetV4",
                "RegisterDataset",
                "RegisterDatasetV2",
                "BigQueryReader",
                "CollectiveReduce",
                "CollectiveReduceV2",
                "CollectiveGather",
                "CollectiveGatherV2",
                "CollectiveBcastSend",
                "CollectiveBcastRecv",
            }
        ),
    ),
    "debug": (
        "op-debug-output",
        "sends tensors to debug URLs (files or gRPC)",
        frozenset(
            {
                "DebugIdentity",
                "DebugIdentityV2",
                "DebugIdentityV3",
                "DebugNanCount",
                "DebugNumericSummary",
                "DebugNumericSummaryV2",
                "CopyHost",
                "Copy",
            }
        ),
    ),
}
# PrintV2 belongs to "file-write" only when its output_stream is a file (``file://...``).
PRINT_TO_FILE = "PrintV2"
_SAVER_OPS = frozenset(
    {"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "Restore", "RestoreV2", "RestoreSlice"}
)
SEVERITIES = ("error", "warning", "allow")


@dataclass(frozen=True)
class Policy:
    """Severity per family, with per-op overrides (op names win over families)."""

    families: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(FAMILIES, "error"))
    ops: Mapping[str, str] = field(default_factory=dict)

    def severity(self, family: str, op: str) -> str:
        return self.ops.get(op, self.families.get(family, "error"))


DEFAULT = Policy()


def parse(spec: Mapping[str, Any] | str | None, where: str | None = None) -> Policy | None:
    """A Policy from ``{"error": [...], "warning": [...], "allow": [...]}`` (family or op names),
    "off" (no scan) or None (every family is an error)."""
    if spec is None:
        return DEFAULT
    if spec == "off":
        return None
    if not isinstance(spec, Mapping):
        raise FormatError(f"op policy: expected an object or 'off', not {spec!r}", where)
    families = dict(DEFAULT.families)
    ops: dict[str, str] = {}
    for severity, names in spec.items():
        if severity not in SEVERITIES:
            raise FormatError(f"op policy: {severity!r} is not one of {', '.join(SEVERITIES)}", where)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FormatError(f"op policy: {severity}: expected a list of family or op names", where)
        for name in names:
            if name not in FAMILIES and name == name.lower():  # op names are CamelCase
                raise FormatError(
                    f"op policy: {name!r} is not a family ({', '.join(FAMILIES)}) nor an op name", where
                )
            (families if name in FAMILIES else ops)[name] = severity
    return Policy(families, ops)


@dataclass(frozen=True)
class OpUse:
    family: str
    op: str
    nodes: tuple[str, ...]  # "node" in the graph, "function/node" in a function

    @property
    def code(self) -> str:
        return FAMILIES[self.family][0]

    def message(self) -> str:
        shown = ", ".join(self.nodes[:3]) + (
            f" and {len(self.nodes) - 3} more" if len(self.nodes) > 3 else ""
        )
        return f"{self.op} {FAMILIES[self.family][1]}: {shown}"


def saver_nodes(mg: meta_graph_pb2.MetaGraphDef, savers: Iterable[meta_graph_pb2.SaverDef] = ()) -> set[str]:
    """Main-graph nodes the model's own savers run: the restore op and save tensor of this meta
    graph's ``saver_def`` (and of ``savers``: a TF1 builder that wrote several meta graphs leaves
    every earlier saver in each later graph), with everything they depend on. Found by
    reachability from saver_defs, never by name: a ``save_1/SaveV2`` that no saver_def of the
    model reaches is as suspect as any other."""
    roots = [
        name
        for saver in [mg.saver_def, *savers]
        for name in (saver.restore_op_name, saver.save_tensor_name)
        if name
    ]
    return {node.name for node in reach.upstream(mg.graph_def, roots)}


def scan(mg: meta_graph_pb2.MetaGraphDef, savers: Iterable[meta_graph_pb2.SaverDef] = ()) -> list[OpUse]:
    """Every flagged op of what can run (the graph, and the functions its nodes call, see
    reach.placed), grouped by family and op; the checkpoint ops of the model's own savers (this
    meta graph's, and ``savers``: the other meta graphs' of the same SavedModel) excepted, and
    main-graph checkpoint ops that nothing run at load or request time reaches (reach.served)."""
    family_of = {op: family for family, (_, _, ops) in FAMILIES.items() for op in ops}
    exempt_nodes = saver_nodes(mg, savers)
    exempt_functions = reach.saver_functions(mg)
    runs = {node.name for node in reach.served(mg)}
    found: dict[tuple[str, str], list[str]] = {}
    for function, node in reach.placed(mg):
        family = family_of.get(node.op)
        if node.op == PRINT_TO_FILE and node.attr["output_stream"].s.startswith(b"file://"):
            family = "file-write"
        if family is None:
            continue
        if node.op in _SAVER_OPS and (
            (function is None and (node.name in exempt_nodes or node.name not in runs))
            or (function is not None and function in exempt_functions)
        ):
            continue
        found.setdefault((family, node.op), []).append(f"{function}/{node.name}" if function else node.name)
    return [OpUse(family, op, tuple(nodes)) for (family, op), nodes in sorted(found.items())]
