"""SavedModelBuilder with TensorFlow 1's semantics, writing through fsspec without TensorFlow.

The first call, :meth:`SavedModelBuilder.add_meta_graph_and_variables`, writes the variables
and assets every later meta graph shares; :meth:`~SavedModelBuilder.add_meta_graph` adds more
tag sets; :meth:`~SavedModelBuilder.save` writes saved_model.pb (or .pbtxt) last, then a
matching fingerprint.pb.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from airflow_savedmodel import location
from airflow_savedmodel.errors import WriteError
from airflow_savedmodel.format import attrs, fingerprint, opdefs, protoio
from airflow_savedmodel.format.bundle import BundleWriter, index_path
from airflow_savedmodel.format.model import (
    ASSETS_COLLECTION,
    ASSETS_DIR,
    FINGERPRINT_PB,
    SAVED_MODEL_PB,
    SAVED_MODEL_PBTXT,
    SCHEMA_VERSION,
    VARIABLES_PREFIX,
    parse_tags,
)
from airflow_savedmodel.format.signatures import RESERVED_KEYS
from airflow_savedmodel.protos import graph_pb2, meta_graph_pb2, types_pb2

MAIN_OP_COLLECTION = "saved_model_main_op"
LEGACY_INIT_OP_COLLECTION = "legacy_init_op"
TRAIN_OP_COLLECTION = "saved_model_train_op"
ASSET_FILEPATHS_COLLECTION = "asset_filepaths"

GraphArg = graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef
AssetsArg = Mapping[str, str] | Sequence[tuple[str, str]] | None


def _asset_pairs(assets: AssetsArg) -> list[tuple[str, str]]:
    if assets is None:
        return []
    return list(assets.items()) if isinstance(assets, Mapping) else list(assets)


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":", 1)[0]


def stripped_op_list(graph: graph_pb2.GraphDef, registry: Mapping[str, graph_pb2.OpDef]) -> graph_pb2.OpList:
    """The OpDefs of every op the graph uses, sorted by name, as TensorFlow records them."""
    used = sorted({node.op for node in attrs.op_nodes(graph)})
    return graph_pb2.OpList(op=[registry[name] for name in used if name in registry])


class SavedModelBuilder:
    """Builds one SavedModel directory at ``export_url``; it must not exist or be empty."""

    def __init__(
        self, export_url: str, storage_options: dict[str, Any] | None = None, fs: Any = None
    ) -> None:
        self.fs, self.path = location.resolve(export_url, storage_options, fs)
        if self.fs.exists(self.path) and (not self.fs.isdir(self.path) or self.fs.ls(self.path)):
            raise WriteError("export directory already exists and is not empty", export_url)
        self.fs.makedirs(self.path, exist_ok=True)
        self.proto = meta_graph_pb2.SavedModel(saved_model_schema_version=SCHEMA_VERSION)
        self._variables_saved = False
        self._saved_assets: set[str] = set()
        self._index_bytes: bytes | None = None

    @property
    def url(self) -> str:
        return location.url_of(self.fs, self.path)

    def add_meta_graph_and_variables(
        self,
        tags: str | Iterable[str],
        graph: GraphArg,
        *,
        variables: Mapping[str, Any] | None = None,
        signature_def_map: Mapping[str, meta_graph_pb2.SignatureDef] | None = None,
        assets: AssetsArg = None,
        init_op: str | None = None,
        train_op: str | None = None,
        saver_def: meta_graph_pb2.SaverDef | None = None,
        strip_default_attrs: bool = False,
        clear_devices: bool = False,
    ) -> None:
        """Save the variables (name -> array, keyed as the graph's restore ops expect) and the first meta graph."""
        if self._variables_saved:
            raise WriteError(
                "variables and assets were already saved; call add_meta_graph() for more tag sets", self.url
            )
        meta = self._meta_graph(
            tags,
            graph,
            signature_def_map=signature_def_map,
            init_op=init_op,
            train_op=train_op,
            saver_def=saver_def,
        )
        if variables:
            if not meta.HasField("saver_def"):
                raise WriteError("variables need a saver_def whose restore op loads them", self.url)
            prefix = location.join(self.path, VARIABLES_PREFIX)
            with BundleWriter(self.fs, prefix) as writer:
                for name, value in variables.items():
                    writer.add(name, np.asarray(value))
            self._index_bytes = self.fs.cat_file(index_path(prefix))
        self._variables_saved = True
        self._add_assets(meta, assets)
        self._finish_meta_graph(meta, strip_default_attrs, clear_devices)

    def add_meta_graph(
        self,
        tags: str | Iterable[str],
        graph: GraphArg,
        *,
        signature_def_map: Mapping[str, meta_graph_pb2.SignatureDef] | None = None,
        assets: AssetsArg = None,
        init_op: str | None = None,
        train_op: str | None = None,
        saver_def: meta_graph_pb2.SaverDef | None = None,
        strip_default_attrs: bool = False,
        clear_devices: bool = False,
    ) -> None:
        """Add a meta graph for another tag set, sharing the variables and assets already saved."""
        if not self._variables_saved:
            raise WriteError("call add_meta_graph_and_variables() first", self.url)
        meta = self._meta_graph(
            tags,
            graph,
            signature_def_map=signature_def_map,
            init_op=init_op,
            train_op=train_op,
            saver_def=saver_def,
        )
        self._add_assets(meta, assets)
        self._finish_meta_graph(meta, strip_default_attrs, clear_devices)

    def _meta_graph(
        self,
        tags: str | Iterable[str],
        graph: GraphArg,
        *,
        signature_def_map: Mapping[str, meta_graph_pb2.SignatureDef] | None,
        init_op: str | None,
        train_op: str | None,
        saver_def: meta_graph_pb2.SaverDef | None,
    ) -> meta_graph_pb2.MetaGraphDef:
        tag_list = sorted(parse_tags(tags)) if isinstance(tags, str) else list(dict.fromkeys(tags))
        if not tag_list:
            raise WriteError("a meta graph needs at least one tag", self.url)
        wanted = frozenset(tag_list)
        if any(frozenset(mg.meta_info_def.tags) == wanted for mg in self.proto.meta_graphs):
            raise WriteError(
                f"a meta graph with tag set {{{', '.join(sorted(wanted))}}} already exists", self.url
            )
        meta = meta_graph_pb2.MetaGraphDef()
        if isinstance(graph, meta_graph_pb2.MetaGraphDef):
            meta.CopyFrom(graph)
            del meta.meta_info_def.tags[:]
        else:
            meta.graph_def.CopyFrom(graph)
        meta.meta_info_def.tags.extend(tag_list)
        for key, sig in (signature_def_map or {}).items():
            _check_signature(key, sig, self.url)
            meta.signature_def[key].CopyFrom(sig)
        if saver_def is not None:
            meta.saver_def.CopyFrom(saver_def)
        nodes = {n.name for n in meta.graph_def.node}
        for collection, op in ((MAIN_OP_COLLECTION, init_op), (TRAIN_OP_COLLECTION, train_op)):
            if op is None:
                continue
            if _node_name(op) not in nodes:
                raise WriteError(f"{collection}: the graph has no op named {op!r}", self.url)
            if collection == MAIN_OP_COLLECTION and (
                MAIN_OP_COLLECTION in meta.collection_def or LEGACY_INIT_OP_COLLECTION in meta.collection_def
            ):
                raise WriteError("the graph already has a main op or legacy init op collection", self.url)
            meta.collection_def[collection].node_list.value[:] = [op]
        return meta

    def _add_assets(self, meta: meta_graph_pb2.MetaGraphDef, assets: AssetsArg) -> None:
        pairs = _asset_pairs(assets)
        if not pairs:
            return
        consts = {n.name: n for n in meta.graph_def.node}
        names: dict[str, str] = {}  # filename -> source, for this call only (TF1's uniquifying rule)
        for tensor, source in pairs:
            node = consts.get(_node_name(tensor))
            if node is None or node.op != "Const" or node.attr["dtype"].type != types_pb2.DT_STRING:
                raise WriteError(
                    f"asset tensor {tensor!r} must be a scalar string Const in the graph", self.url
                )
            src_fs, src_path = location.resolve(source)
            if not src_fs.isfile(src_path):
                raise WriteError(f"asset source {source!r} does not exist", self.url)
            filename = posixpath.basename(src_path)
            base, n = filename, 0
            while (
                filename in names and names[filename] != source and not _same_content(names[filename], source)
            ):
                n += 1
                filename = f"{base}_{n}"
            names[filename] = source
            if filename not in self._saved_assets:
                target = location.join(self.path, ASSETS_DIR, filename)
                self.fs.makedirs(location.join(self.path, ASSETS_DIR), exist_ok=True)
                with src_fs.open(src_path, "rb") as src, self.fs.open(target, "wb") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                self._saved_assets.add(filename)
            asset = meta_graph_pb2.AssetFileDef(filename=filename)
            asset.tensor_info.name = tensor if ":" in tensor else f"{tensor}:0"
            meta.collection_def[ASSETS_COLLECTION].any_list.value.append(protoio.pack_any(asset))
            meta.collection_def[ASSET_FILEPATHS_COLLECTION].node_list.value.append(asset.tensor_info.name)

    def _finish_meta_graph(self, meta: meta_graph_pb2.MetaGraphDef, strip: bool, clear: bool) -> None:
        registry = attrs.registry_for(meta, opdefs.latest())
        if not meta.meta_info_def.HasField("stripped_op_list"):
            meta.meta_info_def.stripped_op_list.CopyFrom(stripped_op_list(meta.graph_def, registry))
        if clear:
            attrs.clear_devices(meta)
        if strip:
            attrs.strip_default_attrs(meta, registry)
        self.proto.meta_graphs.append(meta)

    def save(self, as_text: bool = False) -> str:
        """Write saved_model.pb (or .pbtxt) and then fingerprint.pb; return the model's URL."""
        if not self.proto.meta_graphs:
            raise WriteError("nothing to save: add a meta graph first", self.url)
        write_saved_model_files(self.fs, self.path, self.proto, self._index_bytes, as_text)
        return self.url


def _same_content(a: str, b: str) -> bool:
    (fs_a, path_a), (fs_b, path_b) = location.resolve(a), location.resolve(b)
    return bool(fs_a.cat_file(path_a) == fs_b.cat_file(path_b))


def _check_signature(key: str, sig: meta_graph_pb2.SignatureDef, where: str) -> None:
    if key in RESERVED_KEYS:
        raise WriteError(f"signature key {key!r} is reserved", where)
    for kind, infos in (("input", sig.inputs), ("output", sig.outputs)):
        for name, info in infos.items():
            encoding = info.WhichOneof("encoding")
            if encoding is None:
                raise WriteError(f"signature {key!r} {kind} {name!r} names no tensor", where)
            if encoding != "composite_tensor" and info.dtype == types_pb2.DT_INVALID:
                raise WriteError(f"signature {key!r} {kind} {name!r} has no dtype", where)


def write_saved_model_files(
    fs: Any, path: str, proto: meta_graph_pb2.SavedModel, index_bytes: bytes | None, as_text: bool = False
) -> None:
    """saved_model.pb (or .pbtxt) then fingerprint.pb, so readers that wait for saved_model.pb see the rest."""
    if as_text:
        fs.pipe_file(location.join(path, SAVED_MODEL_PBTXT), protoio.to_text(proto).encode())
    else:
        data = proto.SerializeToString(deterministic=True)
        if len(data) > 2**31 - 1:
            raise WriteError(
                f"saved_model.pb would be {len(data)} bytes, over the 2 GiB protobuf limit", path
            )
        fs.pipe_file(location.join(path, SAVED_MODEL_PB), data)
    fp = fingerprint.compute(proto, index_bytes)
    fs.pipe_file(location.join(path, FINGERPRINT_PB), fp.SerializeToString(deterministic=True))
