"""A SavedModel summarised as a stable JSON document, and rendered as text like saved_model_cli.

The JSON layout is versioned by its ``schema`` field and documented in the README; add fields,
never rename or remove them within one schema version.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

from airflow_savedmodel.format.model import ASSETS_EXTRA_DIR, MetaGraph, SavedModel, TagsArg, format_tags
from airflow_savedmodel.format.signatures import Signature

if TYPE_CHECKING:
    import numpy as np

SCHEMA = "airflow-savedmodel/inspect/v1"


def fingerprint_json(model: SavedModel) -> dict[str, Any] | None:
    fp = model.fingerprint
    if fp is None:
        return None
    return {
        "saved_model_checksum": fp.saved_model_checksum,
        "graph_def_program_hash": fp.graph_def_program_hash,
        "signature_def_hash": fp.signature_def_hash,
        "saved_object_graph_hash": fp.saved_object_graph_hash,
        "checkpoint_hash": fp.checkpoint_hash,
        "producer": fp.version.producer,
        "uuid": fp.uuid,
    }


def meta_graph_json(mg: MetaGraph) -> dict[str, Any]:
    info = mg.proto.meta_info_def
    return {
        "tags": sorted(mg.tags),
        "tensorflow_version": info.tensorflow_version,
        "stripped_default_attrs": info.stripped_default_attrs,
        "signatures": {k: s.to_json() for k, s in mg.signatures.items()},
        # once each: TF1 builders can record one asset twice (it is one file, read once)
        "assets": [
            {"filename": f, "tensor": t}
            for f, t in dict.fromkeys((a.filename, a.tensor_name) for a in mg.assets())
        ],
        "ops": mg.op_types(),
        "num_nodes": len(mg.proto.graph_def.node),
        "num_functions": len(mg.proto.graph_def.library.function),
    }


def variables_json(model: SavedModel) -> dict[str, Any] | None:
    bundle = model.variables()
    if bundle is None:
        return None
    tensors = []
    for entry in bundle.entries():
        tensors.append(
            {
                "name": entry.name,
                "dtype": entry.dtype_name,
                "shape": list(entry.shape),
                "bytes": bundle.stored_size(entry.name),
                "shard": None if entry.partitioned else entry.shard_id,
                "partitioned": entry.partitioned,
            }
        )
    return {
        "num_shards": bundle.num_shards,
        "total_bytes": sum(t["bytes"] for t in tensors),
        "tensors": tensors,
    }


def describe(model: SavedModel, tags: TagsArg = None) -> dict[str, Any]:
    """The inspect document: every meta graph (or the one matching ``tags``), variables, assets, fingerprint."""
    metas = [model.meta_graph(tags)] if tags else model.meta_graphs
    return {
        "schema": SCHEMA,
        "url": model.url,
        "saved_model_file": model.saved_model_file,
        "saved_model_schema_version": model.schema_version,
        "tag_sets": [sorted(t) for t in model.tag_sets],
        "meta_graphs": [meta_graph_json(mg) for mg in metas],
        "variables": variables_json(model),
        "assets": model.list_files("assets"),
        "assets_extra": model.list_files(ASSETS_EXTRA_DIR),
        "fingerprint": fingerprint_json(model),
    }


def _signature_text(sig: Signature) -> list[str]:
    lines = [f"signature_def['{sig.key}']:"]
    for title, specs, label in (("input", sig.inputs, "inputs"), ("output", sig.outputs, "outputs")):
        lines.append(f"  The given SavedModel SignatureDef contains the following {title}(s):")
        for key, spec in specs.items():
            lines.append(f"    {label}['{key}'] tensor_info:")
            lines.append(f"        dtype: {spec.dtype}")
            lines.append(f"        shape: {spec.shape_text()}")
            if spec.encoding == "dense":
                lines.append(f"        name: {spec.tensor_name}")
            elif spec.encoding == "coo_sparse":
                for part, name in (spec.sparse_tensor_names or {}).items():
                    lines.append(f"        {part}: {name}")
            else:
                lines.append(f"        composite: {spec.composite_type} ({len(spec.components)} components)")
    lines.append(f"  Method name is: {sig.method_name}")
    return lines


def render_text(model: SavedModel, doc: dict[str, Any]) -> str:
    """Human-readable inspect output: saved_model_cli's ``show --all`` followed by our extras."""
    lines: list[str] = []
    for mg_doc in doc["meta_graphs"]:
        mg = model.meta_graph(mg_doc["tags"])
        lines.append(
            f"MetaGraphDef with tag-set: '{format_tags(mg.tags)}' contains the following SignatureDefs:"
        )
        lines.append("")
        for sig in mg.signatures.values():
            lines.extend(_signature_text(sig))
            lines.append("")
        lines.append(
            f"The MetaGraph with tag set [{format_tags(mg.tags)}] contains the following ops: {mg_doc['ops']}"
        )
        if mg_doc["assets"]:
            lines.append(
                "Assets named by this meta graph: " + ", ".join(a["filename"] for a in mg_doc["assets"])
            )
        lines.append("")
    variables = doc["variables"]
    if variables is None:
        lines.append("Variables: none")
    else:
        lines.append(
            f"Variables: {len(variables['tensors'])} tensors, {human_bytes(variables['total_bytes'])} "
            f"in {variables['num_shards']} shard(s)"
        )
        lines.extend(variable_table(variables["tensors"]))
    lines.append("")
    lines.append("Asset files: " + (", ".join(doc["assets"]) or "none"))
    lines.append("assets.extra files: " + (", ".join(doc["assets_extra"]) or "none"))
    fp = doc["fingerprint"]
    if fp is None:
        lines.append("Fingerprint: none (no fingerprint.pb)")
    else:
        lines.append(
            "Fingerprint: "
            f"{fp['graph_def_program_hash']}/{fp['signature_def_hash']}/{fp['saved_object_graph_hash']}/{fp['checkpoint_hash']}"
            f" (checksum {fp['saved_model_checksum']})"
        )
    return "\n".join(lines)


def variable_table(tensors: list[dict[str, Any]]) -> list[str]:
    rows = [("name", "dtype", "shape", "bytes")]
    rows += [(t["name"], t["dtype"], str(tuple(t["shape"])), str(t["bytes"])) for t in tensors]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def value_json(array: np.ndarray) -> Any:
    """A tensor value as JSON: nested lists; bytes as text when UTF-8, else {"base64": ...}; complex as [re, im]."""
    import numpy as np

    def scalar(x: Any) -> Any:
        if isinstance(x, bytes):
            try:
                return x.decode("utf-8")
            except UnicodeDecodeError:
                return {"base64": base64.b64encode(x).decode("ascii")}
        if isinstance(x, complex):
            return [scalar(x.real), scalar(x.imag)]
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return x

    def walk(x: Any) -> Any:
        return [walk(i) for i in x] if isinstance(x, list) else scalar(x)

    if array.dtype.kind not in "biufcO":  # ml_dtypes extension types (bfloat16, float8, int4)
        array = array.astype(np.int64 if "int" in array.dtype.name else np.float64)
    return walk(array.tolist())
