"""An open SavedModel directory at any fsspec URL: its meta graphs, variables, assets and fingerprint."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import (
    FormatError,
    MetaGraphNotFoundError,
    MissingFileError,
    SignatureNotFoundError,
    UnsupportedFormatError,
)
from airflow_savedmodel.format import protoio
from airflow_savedmodel.format.bundle import BundleReader, index_path
from airflow_savedmodel.format.signatures import Signature, signature
from airflow_savedmodel.protos import fingerprint_pb2, meta_graph_pb2

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
SAVED_MODEL_CPB = "saved_model.cpb"
FINGERPRINT_PB = "fingerprint.pb"
# The files a rewrite of the meta graphs replaces; every other file of a model carries over.
PROTO_FILES = frozenset({SAVED_MODEL_PB, SAVED_MODEL_PBTXT, FINGERPRINT_PB})
VARIABLES_DIR = "variables"
VARIABLES_PREFIX = "variables/variables"
ASSETS_DIR = "assets"
ASSETS_EXTRA_DIR = "assets.extra"
ASSETS_COLLECTION = "saved_model_assets"
SCHEMA_VERSION = 1
MAX_PROTO_BYTES = 2**31 - 1
MAX_FINGERPRINT_BYTES = 1 << 20

TagsArg = str | Iterable[str] | None


def parse_tags(tags: TagsArg) -> frozenset[str]:
    """``"serve,gpu"`` or ``["serve", "gpu"]`` as a tag set; empty items are dropped."""
    if tags is None:
        return frozenset()
    items = tags.split(",") if isinstance(tags, str) else tags
    return frozenset(t.strip() for t in items if t.strip())


def format_tags(tags: Iterable[str]) -> str:
    return ", ".join(sorted(tags))


@dataclass(frozen=True)
class AssetRef:
    """An asset a meta graph names: the file under assets/ and the tensor fed its path at load time."""

    filename: str
    tensor_name: str
    source: str  # asset_file_def | collection


class MetaGraph:
    """One MetaGraphDef of a SavedModel, identified by its tag set."""

    def __init__(self, proto: meta_graph_pb2.MetaGraphDef, index: int, url: str | None = None) -> None:
        self.proto = proto
        self.index = index
        self.url = url  # the model's, for error messages

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.proto.meta_info_def.tags)

    @property
    def tag_set(self) -> frozenset[str]:
        return frozenset(self.tags)

    @cached_property
    def signatures(self) -> dict[str, Signature]:
        return {k: signature(k, v) for k, v in sorted(self.proto.signature_def.items())}

    def signature(self, key: str) -> Signature:
        try:
            return self.signatures[key]
        except KeyError:
            raise SignatureNotFoundError(
                f"no signature {key!r} in meta graph {{{format_tags(self.tags)}}}; "
                f"choose from: {', '.join(self.signatures) or '(none)'}",
                self.url,
            ) from None

    def function_names(self) -> set[str]:
        return {f.signature.name for f in self.proto.graph_def.library.function}

    def op_types(self) -> list[str]:
        """Every op type the graph and its function library use (function calls by name excluded)."""
        functions = self.function_names()
        ops = {n.op for n in self.proto.graph_def.node}
        for fn in self.proto.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
        return sorted(ops - functions)

    def assets(self) -> list[AssetRef]:
        """Assets from asset_file_def (TF2, and TF1 written by newer builders) or the TF1 asset collection."""
        if self.proto.asset_file_def:
            return [
                AssetRef(a.filename, a.tensor_info.name, "asset_file_def") for a in self.proto.asset_file_def
            ]
        refs = []
        collection = self.proto.collection_def.get(ASSETS_COLLECTION)
        if collection is not None and collection.HasField("any_list"):
            for value in collection.any_list.value:
                asset = protoio.unpack_any(value, meta_graph_pb2.AssetFileDef)
                if asset is not None:
                    refs.append(AssetRef(asset.filename, asset.tensor_info.name, "collection"))
        return refs


class SavedModel:
    """A SavedModel directory, read once on open; variables are opened lazily and read tensor by tensor."""

    def __init__(
        self,
        fs: AbstractFileSystem,
        path: str,
        proto: meta_graph_pb2.SavedModel,
        saved_model_file: str,
        fingerprint: fingerprint_pb2.FingerprintDef | None,
        *,
        in_memory: dict[str, bytes] | None = None,
    ) -> None:
        self.fs = fs
        # Files whose content is held here rather than read from ``path`` (a rewrite's new
        # saved_model.pb and fingerprint.pb, see transforms.plan).
        self.in_memory = dict(in_memory or {})
        self.path = path
        self.proto = proto
        self.saved_model_file = saved_model_file
        self.fingerprint = fingerprint
        url = location.url_of(fs, path)
        self.meta_graphs = [MetaGraph(mg, i, url) for i, mg in enumerate(proto.meta_graphs)]
        self._variables: BundleReader | None = None

    @classmethod
    def open(
        cls, url: str, storage_options: dict[str, Any] | None = None, fs: AbstractFileSystem | None = None
    ) -> SavedModel:
        filesystem, path = location.resolve(url, storage_options, fs)
        proto, name = read_saved_model_proto(filesystem, path)
        return cls(filesystem, path, proto, name, read_fingerprint(filesystem, path))

    def __enter__(self) -> SavedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._variables is not None:
            self._variables.close()
            self._variables = None

    @property
    def url(self) -> str:
        return location.url_of(self.fs, self.path)

    def file(self, *parts: str) -> str:
        return location.join(self.path, *parts)

    def with_files(self, files: dict[str, bytes]) -> SavedModel:
        """This model with ``files`` (relative path -> bytes) in memory, added or replacing."""
        return SavedModel(
            self.fs,
            self.path,
            self.proto,
            self.saved_model_file,
            self.fingerprint,
            in_memory={**self.in_memory, **files},
        )

    def file_sizes(self) -> dict[str, int]:
        """``{relative path: bytes}`` of the model's regular files, in-memory ones included."""
        infos = location.relative_infos(self.fs, self.path, skip_irregular=True)
        sizes = {rel: int(info.get("size") or 0) for rel, info in infos.items()}
        return {**sizes, **{rel: len(data) for rel, data in self.in_memory.items()}}

    @property
    def schema_version(self) -> int:
        return int(self.proto.saved_model_schema_version)

    @property
    def tag_sets(self) -> list[tuple[str, ...]]:
        return [tuple(sorted(mg.tags)) for mg in self.meta_graphs]

    def meta_graph(self, tags: TagsArg = None) -> MetaGraph:
        """The first meta graph whose tag set equals ``tags`` exactly, as TensorFlow's loader picks it.

        With no tags, a model holding a single meta graph returns it.
        """
        wanted = parse_tags(tags)
        if not wanted and len(self.meta_graphs) == 1:
            return self.meta_graphs[0]
        for mg in self.meta_graphs:
            if mg.tag_set == wanted:
                return mg
        available = ", ".join(repr(format_tags(t)) for t in self.tag_sets) or "(none)"
        raise MetaGraphNotFoundError(
            f"no meta graph with tag set {{{format_tags(wanted)}}}; available tag sets: {available}",
            self.url,
        )

    @property
    def has_variables(self) -> bool:
        return bool(self.fs.exists(index_path(self.file(VARIABLES_PREFIX))))

    def variables(self) -> BundleReader | None:
        """The variables bundle, or None when the model has none (no variables/variables.index)."""
        if self._variables is None:
            if not self.has_variables:
                return None
            self._variables = BundleReader(self.fs, self.file(VARIABLES_PREFIX))
        return self._variables

    def list_files(self, subdir: str) -> list[str]:
        """Files under ``subdir`` (e.g. ``assets``), relative to it, sorted."""
        root = self.file(subdir)
        if not self.fs.isdir(root):
            return []
        return location.relative_files(self.fs, root, self.path, skip_irregular=True)


def read_saved_model_proto(fs: AbstractFileSystem, path: str) -> tuple[meta_graph_pb2.SavedModel, str]:
    """Parse saved_model.pb, else saved_model.pbtxt; the chunked .cpb is reported as unsupported."""
    for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT):
        file = location.join(path, name)
        try:
            data = location.read_file(fs, file, root=path, limit=MAX_PROTO_BYTES)
        except MissingFileError:
            continue
        if name == SAVED_MODEL_PB:
            return protoio.parse_binary(meta_graph_pb2.SavedModel, data, file), name
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"text proto is not UTF-8: {exc}", file) from None
        return protoio.parse_text(meta_graph_pb2.SavedModel, text, file), name
    if fs.exists(location.join(path, SAVED_MODEL_CPB)):
        raise UnsupportedFormatError(
            "chunked SavedModel (saved_model.cpb, written with experimental_image_format) is not supported; "
            "re-export without it",
            location.join(path, SAVED_MODEL_CPB),
        )
    raise missing_model_error(fs, path)


def has_saved_model(fs: AbstractFileSystem, path: str) -> bool:
    """Whether ``path`` holds saved_model.pb or saved_model.pbtxt."""
    return any(fs.isfile(location.join(path, name)) for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT))


def missing_model_error(fs: AbstractFileSystem, path: str) -> MissingFileError:
    """The error for a directory that is not a SavedModel, saying whether it exists at all."""
    where = location.url_of(fs, path)
    if not fs.exists(path):
        return MissingFileError("does not exist", where)
    return MissingFileError(
        f"not a SavedModel: no {SAVED_MODEL_PB} or {SAVED_MODEL_PBTXT} in the directory", where
    )


def read_fingerprint(fs: AbstractFileSystem, path: str) -> fingerprint_pb2.FingerprintDef | None:
    file = location.join(path, FINGERPRINT_PB)
    try:  # a FingerprintDef is six integers and a uuid: far below the limit
        data = location.read_file(fs, file, root=path, limit=MAX_FINGERPRINT_BYTES)
    except MissingFileError:
        return None
    return protoio.parse_binary(fingerprint_pb2.FingerprintDef, data, file)
