"""Whole-model rewrites: change a SavedModel's meta graphs, as a plan or written elsewhere.

A rewrite only ever changes saved_model.pb (or .pbtxt) and fingerprint.pb; every other file
carries over byte for byte. :func:`plan` applies any number of changes (clear devices, strip
default attrs) to the proto in memory in one pass and returns the new bytes of those two files
with a model view that reads everything else from the source, so callers can validate the result
and then copy the rest however is cheapest (server-side within one object store, see
storage/export.py). :func:`rewrite` writes a plan to a directory: the unchanged files first, the
new proto last, all in a hidden staging directory moved into place only when complete, so a
failure leaves the destination as it was and the source is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.errors import SavedModelError, WriteError
from airflow_savedmodel.format import attrs, protoio
from airflow_savedmodel.format import fingerprint as fingerprints
from airflow_savedmodel.format.model import FINGERPRINT_PB, PROTO_FILES, SAVED_MODEL_PBTXT, SavedModel
from airflow_savedmodel.protos import meta_graph_pb2

Rewrite = Callable[[meta_graph_pb2.MetaGraphDef], attrs.RewriteStats]
MAX_PROTO_BYTES = 2**31 - 1

# The rewrites by the names operators, the hook and the CLI use, in the order they are applied.
REWRITES: dict[str, Rewrite] = {
    "clear_devices": attrs.clear_devices,
    "strip_default_attrs": attrs.strip_default_attrs,
    "add_default_attrs": attrs.add_default_attrs,
}


@dataclass
class RewritePlan:
    """A model with changed meta graphs, not written anywhere yet.

    ``model`` reads the rewritten proto from memory and every other file (variables, assets)
    from the source directory; ``files`` holds the new saved_model.pb (or .pbtxt, as the source
    had) and fingerprint.pb; ``changed`` counts attrs removed or added and devices cleared.
    """

    source: SavedModel
    model: SavedModel
    files: dict[str, bytes]
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(int(s["changed"]) for s in self.stats)

    def carried_over(self, rel: str) -> bool:
        """Whether the source file ``rel`` is part of the result unchanged."""
        return rel not in PROTO_FILES


def plan(model: SavedModel, changes: Sequence[str | Rewrite]) -> RewritePlan:
    """Apply ``changes`` (names in :data:`REWRITES`, or functions) to every meta graph of ``model``
    in one pass over a copy of its proto; the source is not modified."""
    functions = [REWRITES[c] if isinstance(c, str) else c for c in changes]
    proto = meta_graph_pb2.SavedModel()
    proto.CopyFrom(model.proto)
    stats = []
    for mg in proto.meta_graphs:
        nodes = changed = 0
        unknown: set[str] = set()
        for change in functions:
            result = change(mg)
            nodes, changed = result.nodes, changed + result.changed
            unknown.update(result.unknown_ops)
        stats.append(
            {
                "tags": sorted(mg.meta_info_def.tags),
                "nodes": nodes,
                "changed": changed,
                "unknown_ops": tuple(sorted(unknown)),
            }
        )
    as_text = model.saved_model_file == SAVED_MODEL_PBTXT
    where = model.file(model.saved_model_file)
    data = protoio.to_text(proto).encode() if as_text else proto.SerializeToString(deterministic=True)
    if not as_text and len(data) > MAX_PROTO_BYTES:
        raise WriteError(f"saved_model.pb would be {len(data)} bytes, over the 2 GiB protobuf limit", where)
    bundle = model.variables()
    fp = fingerprints.compute(proto, bundle.index_bytes if bundle is not None else None)
    files = {model.saved_model_file: data, FINGERPRINT_PB: fp.SerializeToString(deterministic=True)}
    view = SavedModel(model.fs, model.path, proto, model.saved_model_file, fp, in_memory=files)
    return RewritePlan(model, view, files, stats)


@dataclass(frozen=True)
class TransformResult:
    src: str
    dst: str
    changed: int
    meta_graphs: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rewrite(
    src_url: str,
    dst_url: str,
    change: Rewrite | Sequence[str | Rewrite],
    *,
    src_options: dict[str, Any] | None = None,
    dst_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    src_fs: Any = None,
    dst_fs: Any = None,
) -> TransformResult:
    """Apply ``change`` (one rewrite, or several in order) to every meta graph of the model at
    ``src_url`` and write the result to ``dst_url``."""
    changes = [change] if callable(change) else list(change)
    with SavedModel.open(src_url, src_options, src_fs) as model:
        dst_fs, dst = location.resolve(dst_url, dst_options, dst_fs)
        if location.url_of(dst_fs, dst) == model.url:
            raise WriteError("destination is the source; write to another directory", dst_url)
        overlap = location.overlap(model.fs, model.path, dst_fs, dst)
        if overlap:
            raise WriteError(f"{overlap}: a rewrite never writes into its source", dst_url)
        if dst_fs.exists(dst) and not overwrite:
            raise WriteError("destination exists (replace it with --overwrite, overwrite=True)", dst_url)
        result = plan(model, changes)
        staging = location.sibling(dst, "tmp")
        try:
            dst_fs.makedirs(staging, exist_ok=True)
            for rel in location.relative_files(model.fs, model.path):
                if not result.carried_over(rel):
                    continue
                target = location.join(staging, rel)
                dst_fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                location.copy_file(model.fs, model.file(rel), dst_fs, target)
            for rel in (model.saved_model_file, FINGERPRINT_PB):  # the proto last, as TF writes it
                dst_fs.pipe_file(location.join(staging, rel), result.files[rel])
            location.replace_dir(dst_fs, staging, dst)
        except BaseException as exc:
            if dst_fs.exists(staging):
                dst_fs.rm(staging, recursive=True)
            if isinstance(exc, SavedModelError | KeyboardInterrupt):
                raise
            if isinstance(exc, OSError):
                raise WriteError(f"writing the rewritten model failed: {exc}", dst_url) from exc
            raise
        return TransformResult(model.url, location.url_of(dst_fs, dst), result.changed, result.stats)


def strip_default_attrs(src_url: str, dst_url: str, **kwargs: Any) -> TransformResult:
    """Copy a model with every default-valued node attr removed (loadable by older TF Serving)."""
    return rewrite(src_url, dst_url, attrs.strip_default_attrs, **kwargs)


def add_default_attrs(
    src_url: str, dst_url: str, *, release: str | None = None, **kwargs: Any
) -> TransformResult:
    """Copy a model with every missing attr default filled in, as TensorFlow ``release`` (default:
    the newest shipped) fills them in on load: the inverse of stripping."""

    def add_default_attrs(meta_graph: meta_graph_pb2.MetaGraphDef) -> attrs.RewriteStats:
        return attrs.add_default_attrs(meta_graph, release=release)

    return rewrite(src_url, dst_url, add_default_attrs, **kwargs)


def clear_devices(src_url: str, dst_url: str, **kwargs: Any) -> TransformResult:
    """Copy a model with every node's device placement removed (serve /gpu-pinned models on CPU)."""
    return rewrite(src_url, dst_url, attrs.clear_devices, **kwargs)
