"""Validate a SavedModel before it ships: a structured report of findings and a verdict.

Checks structure (the proto, tag sets, signatures against the graph), variables (index,
shards, bounds, optionally every crc32c, and that what the graph restores is there), assets,
an expected signature contract, compatibility with a target TensorFlow release's op registry,
device pinning and size. Every finding has a stable ``code`` (listed in FINDING_CODES).
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location, schemas
from airflow_savedmodel.errors import (
    FormatError,
    MissingFileError,
    NotFoundError,
    SavedModelError,
    StorageError,
)
from airflow_savedmodel.format import attrs, compat, dtypes, loadability, opdefs, reach, tensor_proto
from airflow_savedmodel.format import op_policy as op_policy_module
from airflow_savedmodel.format.bundle import BundleReader, verify_entries
from airflow_savedmodel.format.model import (
    ASSETS_DIR,
    SAVED_MODEL_PB,
    SCHEMA_VERSION,
    VARIABLES_DIR,
    MetaGraph,
    SavedModel,
    TagsArg,
    format_tags,
    parse_tags,
)
from airflow_savedmodel.format.signatures import DEFAULT_SERVING_KEY, RESERVED_KEYS
from airflow_savedmodel.protos import graph_pb2, meta_graph_pb2, types_pb2

SERVE_TAG = "serve"  # the tag set TF Serving loads (tag_constants.SERVING)
ERROR = "error"
WARNING = "warning"
SCHEMA = "airflow-savedmodel/validate/v1"
PROTO_LIMIT = 2**31 - 1
DEFAULT_SIZE_WARNING = 1 << 30
MAX_SPEC_BYTES = 16 << 20  # a signature spec is a small JSON or YAML document
MAX_SHARD_FINDINGS = 10  # missing shards named one by one; the rest are counted in one finding

FINDING_CODES = {
    # OMS signature findings (added by storage/signed.py when signatures are required)
    "signature-missing": "signatures are required and the model has no model.sig",
    "signature-invalid": "model.sig is malformed or its signature does not match what it signs",
    "signature-untrusted": "model.sig is signed by a key or certificate that is not trusted here",
    "file-not-signed": "a file of the model is not covered by its signature",
    "file-changed": "a file's content differs from its signed digest",
    "file-missing": "a signed file is no longer in the model",
    "saved-model-unreadable": "saved_model.pb/.pbtxt is missing, malformed or in an unsupported variant",
    "file-not-regular": "an entry in the model is a FIFO, device, socket or a symlink leaving the model",
    "no-meta-graphs": "the SavedModel holds no meta graph",
    "duplicate-tag-set": "two meta graphs have the same tag set; loaders only ever find the first",
    "unknown-schema-version": "saved_model_schema_version is not the one TensorFlow writes",
    "tag-set-missing": "no meta graph has the requested tag set",
    "required-signature-missing": "a signature the caller requires is not in the meta graph",
    "signature-tensor-missing": "a signature names a tensor whose node is not in the graph",
    "signature-output-index": "a signature names an output index the node does not have",
    "signature-input-unfed": "a signature output depends on a placeholder that is not one of its inputs (every request fails)",
    "signature-dtype-mismatch": "a signature's dtype differs from what the producing node outputs",
    "variables-missing": "the graph restores variables but the model has no variables (half-copied?)",
    "variables-index-unreadable": "variables.index is missing, truncated or corrupt",
    "variables-shard-missing": "a data shard the index refers to does not exist",
    "variables-entry-out-of-bounds": "a tensor's bytes lie beyond the end of its shard",
    "variables-checksum-mismatch": "a tensor's bytes do not match their crc32c (deep check)",
    "variables-slices-inconsistent": "a partitioned variable's slices do not tile its full shape",
    "variable-not-in-bundle": "the graph restores a variable the bundle does not hold",
    "asset-missing": "an asset an op reads is not under assets/ (the loader's init op fails)",
    "asset-missing-unread": "an asset the meta graph names is not under assets/, but no op reads it",
    "asset-path-escapes": "an asset file name is absolute or leaves assets/ ('..', separators)",
    "expect-signature-missing": "the expected signature is not in the model",
    "expect-method-mismatch": "the signature's method name differs from the expected one",
    "expect-input-missing": "an expected input is not in the signature (renamed or removed)",
    "expect-input-unexpected": "the signature has an input the contract does not list",
    "expect-output-missing": "an expected output is not in the signature",
    "expect-output-unexpected": "the signature has an output the contract does not list (strict only)",
    "expect-dtype-mismatch": "an input or output has another dtype than expected",
    "expect-shape-mismatch": "an input or output has another shape than expected",
    "op-unknown-in-target": "an op the target TensorFlow release does not register",
    "attr-default-unknown-in-target": "a default-valued attr the target release does not know (fix: strip_default_attrs)",
    "attr-unknown-in-target": "an attr with a non-default value the target release does not know",
    "device-pinned-accelerator": "a node is pinned to a device the target server lacks (a GPU or TPU on a CPU server)",
    "op-no-kernel": "an op the target release registers but cannot run on the target device (no kernel for the node's types)",
    "release-range-unmet": "a release in the required range cannot serve the model on the target device",
    "graph-version-unsupported": "the GraphDef's version stamp is outside the range the target release loads",
    "saved-model-too-large": "saved_model.pb exceeds the 2 GiB protobuf limit",
    "saved-model-large": "saved_model.pb is over the size threshold (large constants in the graph?)",
    "op-reads-files": "an op reads files (ReadFile, readers, file datasets, restores outside the saver)",
    "op-writes-files": "an op writes files (WriteFile, saves outside the saver, summaries, PrintV2 to a file)",
    "op-runs-python": "an op calls back into Python (PyFunc, EagerPyFunc): TF Serving cannot run it",
    "op-reaches-network": "an op connects to other servers (RPC, tf.data service, collectives)",
    "op-debug-output": "an op sends tensors to debug URLs (DebugIdentity and the like)",
    "signature-breaking-change": "a signature change breaks clients of the model compared with (compatible_with)",
    "compatible-with-unreadable": "the model to compare signatures with (compatible_with) cannot be read",
    "warmup-corrupt": "a warmup record's framing or crc32c is wrong (TF Serving: 'corrupted record')",
    "warmup-too-many-records": "the warmup file holds more than the 1000 records TF Serving accepts",
    "warmup-record-unparseable": "a warmup record is not a PredictionLog",
    "warmup-log-type-unsupported": "a warmup record's log type is one TF Serving does not replay (session run, streamed)",
    "warmup-signature-missing": "a warmup request names a signature the served meta graph lacks",
    "warmup-method-mismatch": "a warmup request's kind (predict, classify, regress) differs from the signature's method",
    "warmup-input-mismatch": "a warmup predict request's input keys differ from the signature's",
    "warmup-dtype-mismatch": "a warmup input's dtype differs from the signature's",
    "warmup-shape-mismatch": "a warmup input's shape does not fit the signature's",
}


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    file: str | None = None
    tags: list[str] | None = None
    fix: str | None = None


@dataclass
class Report:
    url: str
    findings: list[Finding] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # With releases=True: {"2.21": {"cpu": [reasons], "gpu": [reasons]}, ...}, no reasons = it serves.
    releases: dict[str, dict[str, list[str]]] | None = None

    @property
    def valid(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def shown_as(self, url: str, rewritten_by: str) -> Report:
        """This report about a rewritten copy, told in terms of the user's model at ``url``: the
        copy's location becomes ``url`` and the rewrite is named (e.g. "strip default attrs")."""
        copy = self.url

        def moved(file: str | None) -> str | None:
            return url + file[len(copy) :] if file and file.startswith(copy) else file

        findings = [replace(f, file=moved(f.file)) for f in self.findings]
        return replace(self, url=f"{url} (after {rewritten_by})", findings=findings)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def summary(self) -> dict[str, Any]:
        """A small JSON-friendly digest (for XCom): verdict, counts and codes."""
        errors = [f.code for f in self.findings if f.severity == ERROR]
        warnings = [f.code for f in self.findings if f.severity == WARNING]
        return {
            "valid": self.valid,
            "errors": len(errors),
            "warnings": len(warnings),
            "codes": sorted(set(errors + warnings)),
        }

    def to_json(self, max_per_code: int | None = None) -> dict[str, Any]:
        """The report as JSON; ``max_per_code`` keeps that many findings of each code and counts
        the rest under ``omitted`` (a truncated shard can yield thousands of one code)."""
        findings, omitted = self.findings, {}
        if max_per_code is not None:
            seen: dict[str, int] = {}
            findings = []
            for f in self.findings:
                seen[f.code] = seen.get(f.code, 0) + 1
                if seen[f.code] <= max_per_code:
                    findings.append(f)
            omitted = {code: n - max_per_code for code, n in sorted(seen.items()) if n > max_per_code}
        return {
            "schema": SCHEMA,
            "url": self.url,
            "valid": self.valid,
            "checks": self.checks,
            "stats": self.stats,
            "findings": [asdict(f) for f in findings],
            **({"omitted": omitted} if omitted else {}),
            **({"releases": self.release_table()} if self.releases is not None else {}),
        }

    def serves_on(self, device: str) -> str:
        """The shipped releases that can serve the model on ``device``, as ranges ("2.15-2.21")."""
        return loadability.serving_range((r, not by[device]) for r, by in (self.releases or {}).items())

    def release_table(self) -> dict[str, Any]:
        """The release range for JSON: per device the ranges, and per release why not."""
        return {
            "serves_on": {device: self.serves_on(device) for device in loadability.DEVICES},
            "by_release": {
                release: {device: {"serves": not why, "why_not": why} for device, why in by.items()}
                for release, by in (self.releases or {}).items()
            },
        }

    def to_text(self) -> str:
        lines = [f"{'VALID' if self.valid else 'INVALID'}: {self.url}"]
        for f in self.findings:
            where = f" [{f.file}]" if f.file else ""
            tags = f" {{{', '.join(f.tags)}}}" if f.tags is not None else ""
            fix = f" (fix: {f.fix})" if f.fix else ""
            lines.append(f"  {f.severity.upper():7} {f.code}{tags}: {f.message}{where}{fix}")
        if not self.findings:
            lines.append("  no findings")
        lines.append("checked: " + ", ".join(self.checks))
        if self.releases is not None:
            lines.append(
                "serves on: " + "; ".join(f"{d.upper()} {self.serves_on(d)}" for d in loadability.DEVICES)
            )
            for release, by in self.releases.items():
                reasons: dict[tuple[str, ...], list[str]] = {}  # one line when devices agree
                for device, why in by.items():
                    if why:
                        reasons.setdefault(tuple(why), []).append(device.upper())
                for shared, devices in reasons.items():
                    lines.append(f"  {release} {'+'.join(devices)}: " + "; ".join(shared))
        return "\n".join(lines)

    def add(self, severity: str, code: str, message: str, **kw: Any) -> None:
        assert code in FINDING_CODES, code
        self.findings.append(Finding(severity, code, message, **kw))


@dataclass(frozen=True)
class Checks:
    """What :func:`validate` checks, as one value the operators, the hook and the CLI pass down
    (the keyword arguments of :func:`validate` other than the model)."""

    tags: TagsArg = "serve"
    required_signatures: Sequence[str] | None = None
    deep: bool = False
    target_tf: str | None = None
    target_device: str = "cpu"
    expect: str | Mapping[str, Any] | None = None
    strict: bool = False
    size_warning_bytes: int = DEFAULT_SIZE_WARNING
    op_policy: Mapping[str, Any] | str | None = None
    compatible_with: str | location.Location | SavedModel | compat.Baseline | None = None
    releases: bool = False
    require_releases: str | None = None

    def run(self, model: str | location.Location | SavedModel, **where: Any) -> Report:
        """Validate ``model`` with these checks (``where``: storage_options or fs for a URL)."""
        return validate(model, **{f.name: getattr(self, f.name) for f in fields(self)}, **where)


def default_required_signatures(tags: frozenset[str]) -> tuple[str, ...]:
    """The signatures a meta graph must have when the caller names none: ``serving_default``
    where TF Serving serves it (its tag set holds ``serve``), none elsewhere."""
    return (DEFAULT_SERVING_KEY,) if SERVE_TAG in tags else ()


def load_spec(source: str | Mapping[str, Any]) -> dict[str, Any]:
    """An expected-signature spec from a dict or a JSON/YAML file path or URL."""
    if isinstance(source, Mapping):
        spec = dict(source)
        _check_spec(spec, None)
        return spec
    fs, path = location.resolve(source)
    try:
        text = location.read_file(fs, path, limit=MAX_SPEC_BYTES).decode("utf-8", errors="replace")
    except MissingFileError:
        raise NotFoundError("signature spec does not exist", source) from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
    except Exception as exc:  # yaml and json raise their own hierarchies
        raise SavedModelError(f"signature spec is not valid JSON/YAML: {exc}", source) from None
    _check_spec(spec, location.redact(source))
    return spec


def _check_spec(spec: Any, where: str | None) -> None:
    """The spec's shape against its JSON Schema, then each dtype against the names we know."""
    schemas.check(spec, schemas.SIGNATURE_SPEC, "signature spec", where)
    for key, signature in spec["signatures"].items():
        for side in ("inputs", "outputs"):
            for name, tensor in ((signature or {}).get(side) or {}).items():
                dtype = (tensor or {}).get("dtype")
                if dtype is None:
                    continue
                try:
                    dtypes.from_name(dtype)
                except ValueError:
                    raise FormatError(
                        f"signature spec: signatures.{key}.{side}.{name}.dtype: unknown dtype {dtype!r}",
                        where,
                    ) from None


def validate(
    url: str | location.Location | SavedModel,
    *,
    tags: TagsArg = "serve",
    required_signatures: Sequence[str] | None = None,
    deep: bool = False,
    target_tf: str | None = None,
    target_device: str = "cpu",
    expect: str | Mapping[str, Any] | None = None,
    strict: bool = False,
    size_warning_bytes: int = DEFAULT_SIZE_WARNING,
    op_policy: Mapping[str, Any] | str | None = None,
    compatible_with: str | location.Location | SavedModel | compat.Baseline | None = None,
    releases: bool = False,
    require_releases: str | None = None,
    storage_options: dict[str, Any] | None = None,
    fs: AbstractFileSystem | None = None,
) -> Report:
    """Validate the model at ``url``; ``tags`` selects the meta graph served (signature checks apply to
    it); ``tags=None`` checks every meta graph's structure without requiring a served one.
    ``op_policy`` (see op_policy.parse): None flags every op family that reads or writes files,
    runs Python, reaches the network or emits debug data; "off" skips the scan.

    ``url`` may be an open SavedModel (e.g. a rewrite plan's model, checked before it is written);
    it is left open. ``compatible_with`` (a model: URL, Location or open) makes every change to
    the served meta graph's signatures that breaks that model's clients an error (format/compat.py).

    The target is TensorFlow ``target_tf`` on ``target_device`` (default: the newest release the
    package ships, on CPU): what a current CPU TF Serving does, device pinning included.
    ``releases`` adds, for every shipped release and device, whether it can serve the model and
    why not (``report.releases``); ``require_releases`` ("2.15-2.21", "2.15+" or "2.15") makes each
    release in that range that cannot serve it on ``target_device`` an error."""
    policy = op_policy_module.parse(op_policy)
    spec = load_spec(expect) if expect is not None else None
    if isinstance(url, SavedModel):
        report = Report(url.url)
        model = url
    else:
        report = Report(url if isinstance(url, str) else url.url)
        try:
            model = (
                SavedModel.open(url, storage_options, fs)
                if isinstance(url, str)
                else SavedModel.open(url.path, fs=url.fs)
            )
        except StorageError:  # the store failed (credentials, network): no verdict on the model
            raise
        except SavedModelError as exc:
            report.add(ERROR, "saved-model-unreadable", exc.problem, file=exc.path)
            report.checks.append("structure")
            return report
    with contextlib.nullcontext(model) if isinstance(url, SavedModel) else model:
        report.url = model.url
        for path, problem in location.irregular_files(model.fs, model.path):
            report.add(ERROR, "file-not-regular", problem, file=path)
        _structure(model, report)
        wanted = parse_tags(spec.get("tag_set", tags) if spec else tags)
        served = next((mg for mg in model.meta_graphs if mg.tag_set == wanted), None)
        if not wanted:
            pass  # tags=None: structure only, no meta graph is singled out as the served one
        elif served is None:
            available = ", ".join(repr(format_tags(t)) for t in model.tag_sets) or "(none)"
            report.add(
                ERROR,
                "tag-set-missing",
                f"no meta graph with tag set {{{format_tags(wanted)}}}; have {available}",
            )
        else:
            for key in (
                default_required_signatures(wanted) if required_signatures is None else required_signatures
            ):
                if key not in served.signatures:
                    report.add(
                        ERROR,
                        "required-signature-missing",
                        f"signature {key!r} is missing; have: "
                        + (", ".join(k for k in served.signatures if k not in RESERVED_KEYS) or "(none)"),
                        tags=sorted(served.tags),
                    )
        _variables(model, report, deep)
        _assets(model, report)
        if served is not None:
            _warmup(model, served, report)
        if served is not None and compatible_with is not None:
            _compatibility(served, compatible_with, storage_options, report)
        if spec is not None:
            report.checks.append("signature contract")
            if served is not None:
                _contract(served, spec, strict, report)
        release = opdefs.normalize(target_tf) if target_tf else opdefs.latest()
        report.checks.append(f"target TensorFlow {release} ({target_device})")
        _target(model, release, target_device, report)
        if releases or require_releases:
            _releases(model, served, report, require_releases, target_device)
        if policy is not None:
            _op_policy(model, policy, report)
        _size(model, report, size_warning_bytes)
    return report


def _structure(model: SavedModel, report: Report) -> None:
    report.checks.append("structure")
    if not model.meta_graphs:
        report.add(ERROR, "no-meta-graphs", "the SavedModel has no meta graphs", file=model.saved_model_file)
    if model.schema_version != SCHEMA_VERSION:
        report.add(
            WARNING,
            "unknown-schema-version",
            f"saved_model_schema_version is {model.schema_version}, expected 1",
        )
    seen: set[frozenset[str]] = set()
    for mg in model.meta_graphs:
        if mg.tag_set in seen:
            report.add(
                ERROR,
                "duplicate-tag-set",
                f"tag set {{{format_tags(mg.tags)}}} appears twice",
                tags=sorted(mg.tags),
            )
        seen.add(mg.tag_set)
        _signatures_against_graph(mg, report)


def _output_types(node: graph_pb2.NodeDef, op_def: graph_pb2.OpDef | None) -> list[tuple[int, int]] | None:
    """A node's outputs as runs of ``(dtype, count)``, when its OpDef and attrs determine them.
    Runs, not one dtype per output: a ``num`` attr may claim billions of outputs."""
    if op_def is None:
        return None
    defaults = {a.name: a.default_value for a in op_def.attr if a.HasField("default_value")}

    def attr(name: str) -> graph_pb2.AttrValue | None:
        return node.attr[name] if name in node.attr else defaults.get(name)

    out: list[tuple[int, int]] = []
    for arg in op_def.output_arg:
        if arg.type_list_attr:
            value = attr(arg.type_list_attr)
            if value is None:
                return None
            out.extend((t, 1) for t in value.list.type)
            continue
        if arg.type:
            dtype = arg.type
        else:
            value = attr(arg.type_attr)
            if value is None:
                return None
            dtype = value.type
        count = 1
        if arg.number_attr:
            value = attr(arg.number_attr)
            if value is None:
                return None
            count = max(0, int(value.i))
        out.append((dtype, count))
    return out


def _output_at(runs: list[tuple[int, int]], index: int) -> int | None:
    """The dtype of output ``index`` in ``runs``, or None past the last output."""
    for dtype, count in runs:
        if index < count:
            return dtype
        index -= count
    return None


def _signatures_against_graph(mg: MetaGraph, report: Report) -> None:
    nodes = {n.name: n for n in mg.proto.graph_def.node}
    registry = attrs.registry_for(mg.proto)
    for key, sig in mg.proto.signature_def.items():
        for kind, infos in (("input", sig.inputs), ("output", sig.outputs)):
            for name, info in infos.items():
                names = []
                encoding = info.WhichOneof("encoding")
                if encoding == "name":
                    names = [(info.name, info.dtype)]
                elif encoding == "coo_sparse":
                    names = [(info.coo_sparse.values_tensor_name, info.dtype)]
                for tensor, dtype in names:
                    where = f"signature {key!r} {kind} {name!r} ({tensor})"
                    _check_tensor(
                        mg, nodes, registry, report, key=key, where=where, tensor=tensor, dtype=dtype
                    )
        if key not in RESERVED_KEYS:  # the init op's asset placeholders are the loader's to feed
            _unfed_placeholders(mg, key, sig, report)


def _unfed_placeholders(mg: MetaGraph, key: str, sig: meta_graph_pb2.SignatureDef, report: Report) -> None:
    """A request feeds only the signature's inputs: an output that needs another placeholder
    fails every request ("You must feed a value for placeholder tensor")."""
    fed = {reach.node_name(t) for info in sig.inputs.values() for t in reach.tensor_names(info)}
    for name, info in sorted(sig.outputs.items()):
        needed = reach.upstream(mg.proto.graph_def, reach.tensor_names(info), fed)
        unfed = sorted(n.name for n in needed if n.op == "Placeholder" and n.name not in fed)
        if unfed:
            report.add(
                ERROR,
                "signature-input-unfed",
                f"signature {key!r} output {name!r} needs placeholder {unfed[0]!r}"
                + (f" (and {len(unfed) - 1} more)" if len(unfed) > 1 else "")
                + ", which is not among the signature's inputs: every request fails "
                '("You must feed a value for placeholder tensor")',
                tags=sorted(mg.tags),
            )


def _check_tensor(
    mg: MetaGraph,
    nodes: Mapping[str, graph_pb2.NodeDef],
    registry: Mapping[str, graph_pb2.OpDef],
    report: Report,
    *,
    key: str,
    where: str,
    tensor: str,
    dtype: int,
) -> None:
    node_name, _, index_text = tensor.partition(":")
    tags = sorted(mg.tags)
    node = nodes.get(node_name)
    if node is None:
        report.add(
            ERROR, "signature-tensor-missing", f"{where}: no node {node_name!r} in the graph", tags=tags
        )
        return
    if key in RESERVED_KEYS:
        return
    types = _output_types(node, registry.get(node.op))
    index = int(index_text) if index_text.isdigit() else 0
    if types is None:
        return
    produced = _output_at(types, index)
    if produced is None:
        outputs = sum(count for _, count in types)
        report.add(
            ERROR, "signature-output-index", f"{where}: {node.op} node has {outputs} outputs", tags=tags
        )
        return
    if dtype != types_pb2.DT_INVALID and dtypes.base(produced) != dtypes.base(dtype):
        report.add(
            ERROR,
            "signature-dtype-mismatch",
            f"{where}: signature says {dtypes.name(dtype)}, the {node.op} node outputs {dtypes.name(produced)}",
            tags=tags,
        )


def restored_variables(mg: MetaGraph) -> set[str]:
    """Checkpoint keys the serving loader reads: those of the restore ops on the saver's restore
    path (format/reach.py), in the main graph and in the functions it calls. Restore functions
    nothing calls (an orphan ``__inference__traced_restore``) are not consulted."""
    keys: set[str] = set()
    path, functions = reach.restore_path(mg.proto)
    graph = mg.proto.graph_def
    main = {n.name: n for n in graph.node}
    scopes: list[tuple[Iterable[graph_pb2.NodeDef], dict[str, graph_pb2.NodeDef]]] = [(path, main)]
    for function in graph.library.function:
        if function.signature.name in functions:
            scopes.append((function.node_def, {n.name: n for n in function.node_def}))
    for nodes, by_name in scopes:
        for node in nodes:
            if node.op not in ("RestoreV2", "Restore", "RestoreSlice") or len(node.input) < 2:
                continue
            const = by_name.get(reach.node_name(node.input[1]))
            if const is None or const.op != "Const" or "value" not in const.attr:
                continue
            try:
                names = tensor_proto.to_numpy(const.attr["value"].tensor).reshape(-1)
            except SavedModelError:
                continue
            keys.update(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)
    return keys


def _variables(model: SavedModel, report: Report, deep: bool) -> None:
    report.checks.append("variables" + (" (deep)" if deep else ""))
    needed: set[str] = set()
    for mg in model.meta_graphs:
        needed |= restored_variables(mg)
    index = model.file(VARIABLES_DIR, "variables.index")
    if not model.fs.exists(index):
        if needed:
            report.add(
                ERROR,
                "variables-missing",
                f"the graph restores {len(needed)} variables but there is no variables/variables.index",
                file=index,
            )
        return
    try:
        reader = BundleReader(model.fs, model.file(VARIABLES_DIR, "variables"))
    except SavedModelError as exc:
        report.add(ERROR, "variables-index-unreadable", exc.problem, file=exc.path)
        return
    with reader:
        report.stats["variables_bytes"] = sum(reader.stored_size(n) for n in reader.names())
        report.stats["num_variables"] = len(reader.names())
        # One listing, not a request per declared shard: a header may claim 100,000 of them.
        present = reader.present_shards()
        missing_shards = set(range(reader.num_shards)) - present
        for shard in sorted(missing_shards)[:MAX_SHARD_FINDINGS]:
            report.add(
                ERROR,
                "variables-shard-missing",
                "data shard does not exist",
                file=reader.data_files_at(shard),
            )
        if len(missing_shards) > MAX_SHARD_FINDINGS:
            report.add(
                ERROR,
                "variables-shard-missing",
                f"and {len(missing_shards) - MAX_SHARD_FINDINGS} more of the {reader.num_shards} data shards "
                f"the index declares do not exist ({len(present)} do)",
                file=reader.index_file,
            )
        for shard in sorted(present):
            try:
                reader.shard_size(shard)
            except SavedModelError as exc:  # a directory or special file named like a shard
                missing_shards.add(shard)
                report.add(ERROR, "variables-shard-missing", exc.problem, file=exc.path)
        for entry in reader.entries():
            if entry.partitioned:
                try:
                    reader.slice_plan(entry)
                except SavedModelError as exc:
                    report.add(ERROR, "variables-slices-inconsistent", exc.problem, file=exc.path)
        for entry in [*reader.entries(), *reader._slice_entries.values()]:
            if entry.partitioned or entry.shard_id in missing_shards:
                continue
            size = reader.shard_size(entry.shard_id)
            if entry.offset + entry.size > size:
                report.add(
                    ERROR,
                    "variables-entry-out-of-bounds",
                    f"tensor {entry.name!r} at [{entry.offset}, +{entry.size}) is beyond the shard's {size} bytes",
                    file=reader.data_files_at(entry.shard_id),
                )
        if deep and not missing_shards:
            for entry, problem in verify_entries(reader):
                code = (
                    "variables-checksum-mismatch"
                    if "checksum" in problem
                    else "variables-entry-out-of-bounds"
                )
                if code == "variables-entry-out-of-bounds":
                    continue  # already reported above
                report.add(
                    ERROR,
                    code,
                    f"tensor {entry.name!r}: {problem}",
                    file=reader.data_files_at(entry.shard_id),
                )
        absent = sorted(k for k in needed if k not in reader)
        if absent:
            shown = ", ".join(repr(k) for k in absent[:5]) + (" ..." if len(absent) > 5 else "")
            report.add(
                ERROR,
                "variable-not-in-bundle",
                f"{len(absent)} restored variables are not in the bundle: {shown}",
                file=reader.index_file,
            )


def _assets(model: SavedModel, report: Report) -> None:
    report.checks.append("assets")
    present = set(model.list_files(ASSETS_DIR))
    for mg in model.meta_graphs:
        unique = {a.filename: a for a in reversed(mg.assets())}  # TF1 collections may repeat an asset
        read = _read_asset_tensors(mg)
        for asset in reversed(unique.values()):
            name = asset.filename
            escapes = (
                not name
                or name.startswith(("/", "\\"))
                or "/" in name
                or "\\" in name
                or "\x00" in name
                or name in (".", "..")
                or ".." in posixpath.normpath(name).split("/")
                or (len(name) > 1 and name[1] == ":")
            )
            if escapes:
                report.add(
                    ERROR,
                    "asset-path-escapes",
                    f"asset file name {name!r} does not stay inside assets/",
                    tags=sorted(mg.tags),
                )
            elif name not in present and asset.tensor_name in read:
                report.add(
                    ERROR,
                    "asset-missing",
                    f"asset {name!r} (fed to {asset.tensor_name}) is not under assets/",
                    tags=sorted(mg.tags),
                    file=model.file(ASSETS_DIR, name),
                )
            elif name not in present:
                report.add(
                    WARNING,
                    "asset-missing-unread",
                    f"asset {name!r} (fed to {asset.tensor_name}) is not under assets/; no op reads it, "
                    "so TensorFlow loads the model",
                    tags=sorted(mg.tags),
                    file=model.file(ASSETS_DIR, name),
                )


def _read_asset_tensors(mg: MetaGraph) -> set[str]:
    """Tensor names of the assets some op reads: the asset's tensor feeds a node of the main graph
    (a TF1 table initializer, a TF2 init call), or its SavedAsset is bound to a TF2 function."""
    graph = mg.proto.graph_def
    consumed = {reach.node_name(i) for node in graph.node for i in node.input}
    read = {a.tensor_name for a in mg.assets() if reach.node_name(a.tensor_name) in consumed}
    objects = mg.proto.object_graph_def
    bound = {i for f in objects.concrete_functions.values() for i in f.bound_inputs}
    for node_id in bound:
        if 0 <= node_id < len(objects.nodes) and objects.nodes[node_id].HasField("asset"):
            index = objects.nodes[node_id].asset.asset_file_def_index
            if 0 <= index < len(mg.proto.asset_file_def):
                read.add(mg.proto.asset_file_def[index].tensor_info.name)
    return read


def _shape_matches(expected: Any, actual: tuple[int, ...] | None) -> bool:
    if expected is None:
        return True
    if actual is None:
        return False
    if len(expected) != len(actual):
        return False
    return all(e is None or e in (-1, a) for e, a in zip(expected, actual, strict=True))


def _contract(mg: MetaGraph, spec: Mapping[str, Any], strict: bool, report: Report) -> None:
    tags = sorted(mg.tags)
    for key, wanted in spec["signatures"].items():
        sig = mg.signatures.get(key)
        if sig is None:
            report.add(ERROR, "expect-signature-missing", f"signature {key!r} is not in the model", tags=tags)
            continue
        want = wanted or {}
        method = want.get("method_name")
        if method and method != sig.method_name:
            report.add(
                ERROR,
                "expect-method-mismatch",
                f"signature {key!r} has method {sig.method_name!r}, expected {method!r}",
                tags=tags,
            )
        for kind, have in (("input", sig.inputs), ("output", sig.outputs)):
            if kind + "s" not in want:
                continue  # the contract says nothing about this side
            expected = want.get(kind + "s") or {}
            missing = [k for k in expected if k not in have]
            extra = [k for k in have if k not in expected]
            for name in missing:
                instead = f"; the model has {', '.join(repr(e) for e in extra)} instead" if extra else ""
                report.add(
                    ERROR,
                    f"expect-{kind}-missing",
                    f"signature {key!r} lacks {kind} {name!r}{instead}",
                    tags=tags,
                )
            if extra and not missing and (kind == "input" or strict):
                report.add(
                    ERROR,
                    f"expect-{kind}-unexpected",
                    f"signature {key!r} has {kind}s the contract lacks: " + ", ".join(repr(e) for e in extra),
                    tags=tags,
                )
            for name, details in expected.items():
                spec_tensor = have.get(name)
                if spec_tensor is None or not details:
                    continue
                if details.get("dtype") is not None:
                    want_dtype = dtypes.from_name(str(details["dtype"]))
                    if dtypes.name(want_dtype) != spec_tensor.dtype:
                        report.add(
                            ERROR,
                            "expect-dtype-mismatch",
                            f"signature {key!r} {kind} {name!r} is {spec_tensor.dtype}, expected {dtypes.name(want_dtype)}",
                            tags=tags,
                        )
                if "shape" in details and not _shape_matches(details["shape"], spec_tensor.shape):
                    report.add(
                        ERROR,
                        "expect-shape-mismatch",
                        f"signature {key!r} {kind} {name!r} has shape {spec_tensor.shape_text()}, expected {details['shape']}",
                        tags=tags,
                    )


def _op_policy(model: SavedModel, policy: op_policy_module.Policy, report: Report) -> None:
    report.checks.append("op policy")
    savers = [mg.proto.saver_def for mg in model.meta_graphs if mg.proto.HasField("saver_def")]
    for mg in model.meta_graphs:
        for use in op_policy_module.scan(mg.proto, savers):
            severity = policy.severity(use.family, use.op)
            if severity != "allow":
                report.add(severity, use.code, use.message(), tags=sorted(mg.tags))


def _target(model: SavedModel, release: str, device: str, report: Report) -> None:
    for mg in model.meta_graphs:
        for problem in loadability.problems(mg.proto, release, device):
            report.add(ERROR, problem.code, problem.message, tags=sorted(mg.tags), fix=problem.fix)


def parse_release_range(text: str) -> list[str]:
    """Shipped releases in ``"2.15-2.21"``, ``"2.15+"`` (and newer) or ``"2.15"`` (that one)."""
    shipped = opdefs.releases()

    def key(release: str) -> tuple[int, ...]:
        return tuple(int(x) for x in opdefs.normalize(release).split("."))

    text = text.strip()
    try:
        if text.endswith("+"):
            low, high = key(text[:-1]), key(shipped[-1])
        elif "-" in text:
            first, last = text.split("-", 1)
            low, high = key(first), key(last)
        else:
            low = high = key(text)
    except ValueError:
        raise FormatError(f"release range {text!r} is not like 2.15-2.21, 2.15+ or 2.15") from None
    wanted = [r for r in shipped if low <= key(r) <= high]
    if not wanted:
        raise NotFoundError(f"no shipped release in {text!r}; shipped: {', '.join(shipped)}")
    return wanted


def _releases(
    model: SavedModel, served: MetaGraph | None, report: Report, required: str | None, device: str
) -> None:
    """Every shipped release on every device: can it serve the served meta graph (or every one)?"""
    graphs = [served] if served is not None else model.meta_graphs
    table: dict[str, dict[str, list[str]]] = {}
    placed = [list(reach.placed(mg.proto)) for mg in graphs]
    for release in opdefs.releases():
        table[release] = {}
        for each in loadability.DEVICES:
            reasons: list[str] = []
            for mg, nodes in zip(graphs, placed, strict=True):
                reasons += [p.reason for p in loadability.problems(mg.proto, release, each, nodes)]
            table[release][each] = list(dict.fromkeys(reasons))
    report.releases = table
    report.checks.append("release range")
    if required is None:
        return
    wanted = parse_release_range(required)
    device_key = device if device in loadability.DEVICES else "cpu"
    failing = [r for r in wanted if table[r][device_key]]
    if failing:
        why = "; ".join(f"{r}: {', '.join(table[r][device_key])}" for r in failing)
        report.add(
            ERROR,
            "release-range-unmet",
            f"required TensorFlow {required} on {device_key.upper()}, but it serves on "
            f"{report.serves_on(device_key)}; {why}",
        )


def _compatibility(
    served: MetaGraph,
    baseline: str | location.Location | SavedModel | compat.Baseline,
    storage_options: dict[str, Any] | None,
    report: Report,
) -> None:
    if isinstance(baseline, compat.Baseline):
        report.checks.append(f"signatures compatible with {baseline.source}")
        _record_changes(compat.diff(baseline.signatures, served.signatures), served, report)
        return
    try:
        old = (
            baseline
            if isinstance(baseline, SavedModel)
            else SavedModel.open(
                *(
                    (baseline, storage_options)
                    if isinstance(baseline, str)
                    else (baseline.path, None, baseline.fs)
                )
            )
        )
    except SavedModelError as exc:
        report.add(ERROR, "compatible-with-unreadable", exc.problem, file=exc.path)
        return
    with contextlib.nullcontext(old) if old is baseline else old:
        report.checks.append(f"signatures compatible with {old.url}")
        before = next((mg for mg in old.meta_graphs if mg.tag_set == served.tag_set), None)
        changes = compat.diff(before.signatures if before is not None else {}, served.signatures)
    _record_changes(changes, served, report)


def _record_changes(changes: list[compat.Change], served: MetaGraph, report: Report) -> None:
    report.stats["signature_changes"] = [c.to_json() for c in changes]
    for change in compat.breaking(changes):
        report.add(ERROR, "signature-breaking-change", change.describe(), tags=sorted(served.tags))


def _warmup(model: SavedModel, served: MetaGraph, report: Report) -> None:
    """assets.extra/tf_serving_warmup_requests, replayed as TF Serving does when it loads the
    version: any problem there fails the load."""
    from airflow_savedmodel.format import warmup

    path = model.file(warmup.WARMUP_FILE)
    held = model.in_memory.get(warmup.WARMUP_FILE)
    if held is None and (
        not model.fs.isfile(path)
        or (location.is_local(model.fs) and location.file_kind_problem(path, model.path) is not None)
    ):
        return  # absent; a file of the wrong kind is reported as file-not-regular
    report.checks.append("warmup requests")
    with io.BytesIO(held) if held is not None else model.fs.open(path, "rb") as handle:
        size = len(held) if held is not None else int(model.fs.size(path))
        for problem in warmup.check(handle, size, served.signatures):
            report.add(ERROR, problem.code, problem.message, file=path, tags=sorted(served.tags))


def _size(model: SavedModel, report: Report, threshold: int) -> None:
    report.checks.append("size")
    file = model.file(model.saved_model_file)
    sizes = model.file_sizes()
    size, total = sizes[model.saved_model_file], sum(sizes.values())
    report.stats.update({"saved_model_bytes": size, "total_bytes": total})
    if size > PROTO_LIMIT - (1 << 20):
        report.add(ERROR, "saved-model-too-large", f"{size} bytes is at the 2 GiB protobuf limit", file=file)
    elif size > threshold:
        biggest = _largest_constants(model)
        report.add(
            WARNING,
            "saved-model-large",
            f"{size} bytes exceeds {threshold}; largest constants: {biggest}"
            if biggest
            else f"{size} bytes exceeds {threshold}",
            file=file,
        )
    if model.saved_model_file != SAVED_MODEL_PB:
        report.stats["text_format"] = True


def _largest_constants(model: SavedModel) -> str:
    sizes = []
    for mg in model.meta_graphs:
        for node in attrs.op_nodes(mg.proto.graph_def):
            if node.op == "Const" and "value" in node.attr:
                sizes.append((node.attr["value"].ByteSize(), node.name))
    return ", ".join(f"{name} ({n} bytes)" for n, name in sorted(sizes, reverse=True)[:3])
