"""Whole-model rewrites: read a SavedModel, change its meta graphs, write it elsewhere.

Everything but saved_model.pb/.pbtxt and fingerprint.pb is copied byte for byte; the rewritten
proto is written last, then a fingerprint matching it. Output goes to a hidden staging
directory first and is moved into place only when complete, so a failure leaves the
destination as it was and the source is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.errors import SavedModelError, WriteError
from airflow_savedmodel.format import attrs
from airflow_savedmodel.format.builder import write_saved_model_files
from airflow_savedmodel.format.model import FINGERPRINT_PB, SAVED_MODEL_PB, SAVED_MODEL_PBTXT, SavedModel
from airflow_savedmodel.protos import meta_graph_pb2

Rewrite = Callable[[meta_graph_pb2.MetaGraphDef], attrs.RewriteStats]
_REWRITTEN = {SAVED_MODEL_PB, SAVED_MODEL_PBTXT, FINGERPRINT_PB}


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
    change: Rewrite,
    *,
    src_options: dict[str, Any] | None = None,
    dst_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    src_fs: Any = None,
    dst_fs: Any = None,
) -> TransformResult:
    """Apply ``change`` to every meta graph of the model at ``src_url`` and write the result to ``dst_url``."""
    with SavedModel.open(src_url, src_options, src_fs) as model:
        dst_fs, dst = location.resolve(dst_url, dst_options, dst_fs)
        if location.url_of(dst_fs, dst) == model.url:
            raise WriteError("destination is the source; write to another directory", dst_url)
        if dst_fs.exists(dst) and not overwrite:
            raise WriteError("destination exists (pass overwrite to replace it)", dst_url)
        proto = meta_graph_pb2.SavedModel()
        proto.CopyFrom(model.proto)
        stats = []
        for mg in proto.meta_graphs:
            result = change(mg)
            stats.append({"tags": sorted(mg.meta_info_def.tags), **asdict(result)})
        bundle = model.variables()
        index_bytes = bundle.index_bytes if bundle is not None else None
        staging = location.sibling(dst, "tmp")
        try:
            dst_fs.makedirs(staging, exist_ok=True)
            for rel in location.relative_files(model.fs, model.path):
                if rel in _REWRITTEN:
                    continue
                target = location.join(staging, rel)
                dst_fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                location.copy_file(model.fs, model.file(rel), dst_fs, target)
            write_saved_model_files(
                dst_fs, staging, proto, index_bytes, as_text=model.saved_model_file == SAVED_MODEL_PBTXT
            )
            location.replace_dir(dst_fs, staging, dst)
        except BaseException as exc:
            if dst_fs.exists(staging):
                dst_fs.rm(staging, recursive=True)
            if isinstance(exc, SavedModelError | KeyboardInterrupt):
                raise
            if isinstance(exc, OSError):
                raise WriteError(f"writing the rewritten model failed: {exc}", dst_url) from exc
            raise
        return TransformResult(
            model.url, location.url_of(dst_fs, dst), sum(s["changed"] for s in stats), stats
        )


def strip_default_attrs(src_url: str, dst_url: str, **kwargs: Any) -> TransformResult:
    """Copy a model with every default-valued node attr removed (loadable by older TF Serving)."""
    return rewrite(src_url, dst_url, attrs.strip_default_attrs, **kwargs)


def add_default_attrs(src_url: str, dst_url: str, **kwargs: Any) -> TransformResult:
    """Copy a model with every missing attr default filled in (the inverse of stripping)."""
    return rewrite(src_url, dst_url, attrs.add_default_attrs, **kwargs)


def clear_devices(src_url: str, dst_url: str, **kwargs: Any) -> TransformResult:
    """Copy a model with every node's device placement removed (serve /gpu-pinned models on CPU)."""
    return rewrite(src_url, dst_url, attrs.clear_devices, **kwargs)
