"""Malformed models give a typed error naming the file and the problem: never a crash, hang or huge allocation."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_savedmodel.errors import (
    ChecksumError,
    FormatError,
    MissingFileError,
    SavedModelError,
    UnsupportedFormatError,
)
from airflow_savedmodel.format import sstable
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.protos import tensor_bundle_pb2

pytestmark = pytest.mark.timeout(120)


def read_everything(path: Path) -> dict[str, bytes]:
    """Touch every part of a model the read path offers; return variable bytes for comparison."""
    values = {}
    with SavedModel.open(str(path)) as model:
        for mg in model.meta_graphs:
            for sig in mg.signatures.values():
                sig.to_json()
            mg.assets()
            mg.op_types()
        bundle = model.variables()
        if bundle is not None:
            for name in bundle.names():
                values[name] = (
                    bundle.read(name).tobytes()
                    if bundle.read(name).dtype != object
                    else repr(bundle.read(name).tolist()).encode()
                )
            bundle.object_graph()
    return values


def positions(size: int, count: int, seed: int, head: int = 16, tail: int = 56) -> list[int]:
    """Every one of the first ``head`` and last ``tail`` bytes (headers, footers, crcs) and
    ``count`` random ones between."""
    rng = random.Random(seed)
    picks = set(range(min(size, head))) | set(range(max(0, size - tail), size))
    picks |= {rng.randrange(size) for _ in range(count)} if size else set()
    return sorted(picks)


def _mutations(
    data: bytes, seed: int, flips: int = 40, cuts: int = 12, edges: tuple[int, int] = (16, 56)
) -> list[tuple[str, bytes]]:
    out = []
    for pos in positions(len(data), flips, seed, *edges):
        flipped = bytearray(data)
        flipped[pos] ^= 0x5A
        out.append((f"flip@{pos}", bytes(flipped)))
    for cut in positions(len(data), cuts, seed + 1, *edges):
        out.append((f"truncate@{cut}", data[:cut]))
    return out


@pytest.mark.parametrize("name", ["tf2_module", "tf1_builder", "all_dtypes", "sharded", "tf1_partitioned"])
def test_corrupt_index_and_shards_are_detected(name: str, model_copy: Callable[[str], Path]) -> None:
    path = model_copy(name)
    original = read_everything(path)
    files = sorted((path / "variables").iterdir())
    for file in files:
        data = file.read_bytes()
        for label, mutated in _mutations(data, seed=len(data)):
            file.write_bytes(mutated)
            try:
                got = read_everything(path)
            except SavedModelError as exc:
                assert str(file) in str(exc) or str(path) in str(exc), (label, str(exc))
            else:
                # Only bytes no reader consults (footer padding) may change without an error.
                assert file.suffix == ".index" and label.startswith("flip"), (file.name, label)
                assert got == original
            finally:
                file.write_bytes(data)


@pytest.mark.parametrize("name", ["tf2_module", "tf1_builder", "tf1_builder_pbtxt", "keras_export"])
def test_corrupt_saved_model_proto_gives_typed_errors(name: str, model_copy: Callable[[str], Path]) -> None:
    path = model_copy(name)
    for file in [p for p in path.iterdir() if p.name.startswith(("saved_model.", "fingerprint"))]:
        data = file.read_bytes()
        # A text proto has no binary header or footer, and a 600 KB one takes 0.3 s to parse in
        # pure Python: about 30 mutations spread over it rather than 120.
        text = file.suffix == ".pbtxt"
        counts, edges = ((12, 4), (8, 8)) if text else ((40, 12), (16, 56))
        for _label, mutated in _mutations(data, 7, *counts, edges=edges):
            file.write_bytes(mutated)
            try:
                read_everything(path)
            except SavedModelError as exc:
                assert str(path) in str(exc)
            finally:
                file.write_bytes(data)


def _rewrite_entries(index: Path, change: Callable[[bytes, Any], None]) -> None:
    items = []
    for key, value in sstable.read_table(index.read_bytes(), str(index)):
        if key:
            entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
            change(key, entry)
            items.append((key, entry.SerializeToString()))
        else:
            items.append((key, value))
    index.write_bytes(sstable.build_table(items))


def _read_all(path: Path) -> None:
    read_everything(path)


def test_entry_beyond_the_shard(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf2_module")

    def move(key: bytes, entry: Any) -> None:
        if key == b"w/.ATTRIBUTES/VARIABLE_VALUE":
            entry.offset = 10**12

    _rewrite_entries(path / "variables" / "variables.index", move)
    with pytest.raises(
        FormatError,
        match=r"variables.data-00000-of-00001: tensor 'w/.ATTRIBUTES/VARIABLE_VALUE' .* extends beyond the shard",
    ):
        _read_all(path)


def test_absurd_shape_does_not_allocate(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf2_module")

    def grow(key: bytes, entry: Any) -> None:
        if key in (b"w/.ATTRIBUTES/VARIABLE_VALUE", b"label/.ATTRIBUTES/VARIABLE_VALUE"):
            del entry.shape.dim[:]
            entry.shape.dim.add(size=2**40)
            entry.shape.dim.add(size=2**20)

    _rewrite_entries(path / "variables" / "variables.index", grow)
    with SavedModel.open(str(path)) as model, pytest.raises(FormatError, match="invalid size"):
        model.variables().read("w/.ATTRIBUTES/VARIABLE_VALUE")  # type: ignore[union-attr]
    with SavedModel.open(str(path)) as model, pytest.raises(FormatError, match="cannot fit"):
        model.variables().read("label/.ATTRIBUTES/VARIABLE_VALUE")  # type: ignore[union-attr]


def test_unknown_dtype(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf2_module")

    def retype(key: bytes, entry: Any) -> None:
        if key == b"b/.ATTRIBUTES/VARIABLE_VALUE":
            entry.dtype = 77

    _rewrite_entries(path / "variables" / "variables.index", retype)
    with SavedModel.open(str(path)) as model, pytest.raises(FormatError, match="dtype DT_77"):
        model.variables().read("b/.ATTRIBUTES/VARIABLE_VALUE")  # type: ignore[union-attr]


def test_bad_header(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf2_module")
    index = path / "variables" / "variables.index"
    items = list(sstable.read_table(index.read_bytes(), "i"))
    header = tensor_bundle_pb2.BundleHeaderProto.FromString(items[0][1])
    header.num_shards = 2**30
    index.write_bytes(sstable.build_table([(b"", header.SerializeToString()), *items[1:]]))
    with pytest.raises(FormatError, match=f"{index}: header declares 1073741824 shards"):
        SavedModel.open(str(path)).variables()
    index.write_bytes(sstable.build_table(items[1:]))
    with pytest.raises(FormatError, match="no header entry"):
        SavedModel.open(str(path)).variables()


def test_missing_shard_and_flipped_data(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("sharded")
    shard = path / "variables" / "variables.data-00001-of-00003"
    data = shard.read_bytes()
    shard.unlink()
    with pytest.raises(
        MissingFileError, match=re.escape("variables.data-00001-of-00003: data shard does not exist")
    ):
        _read_all(path)
    shard.write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    with pytest.raises(ChecksumError, match="data checksum mismatch"):
        _read_all(path)


def test_missing_and_unsupported_saved_model_files(tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError,
        match=re.escape(f"{tmp_path}: not a SavedModel: no saved_model.pb or saved_model.pbtxt"),
    ):
        SavedModel.open(str(tmp_path))
    (tmp_path / "saved_model.cpb").write_bytes(b"riegeli")
    with pytest.raises(UnsupportedFormatError, match=re.escape("saved_model.cpb: chunked SavedModel")):
        SavedModel.open(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(FormatError, match=re.escape("saved_model.pb: not a valid tensorflow.SavedModel")):
        SavedModel.open(str(tmp_path))
    (tmp_path / "saved_model.pb").unlink()
    (tmp_path / "saved_model.pbtxt").write_text("meta_graphs { bogus: 1 }")
    with pytest.raises(
        FormatError, match=re.escape("saved_model.pbtxt: not a valid text tensorflow.SavedModel")
    ):
        SavedModel.open(str(tmp_path))


def test_deeply_nested_proto_is_rejected(tmp_path: Path) -> None:
    """FullTypeDef.args nested 5000 deep inside a NodeDef: a recursion bomb, not a model."""
    inner = b""
    for _ in range(5000):
        inner = b"\x12" + _len(inner) + inner  # FullTypeDef.args
    node = b"\x3a" + _len(inner) + inner  # NodeDef.experimental_type
    graph = b"\x0a" + _len(node) + node  # GraphDef.node
    meta = b"\x12" + _len(graph) + graph  # MetaGraphDef.graph_def
    (tmp_path / "saved_model.pb").write_bytes(b"\x12" + _len(meta) + meta)  # SavedModel.meta_graphs
    with pytest.raises(FormatError, match=re.escape("saved_model.pb: not a valid tensorflow.SavedModel")):
        SavedModel.open(str(tmp_path))


def _len(data: bytes) -> bytes:
    from airflow_savedmodel.format import varint

    return varint.encode(len(data))


def test_a_header_claiming_100000_shards_costs_what_the_files_hold(
    model_copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation lists the variables directory once; it never asks the store about each of the
    100,000 shards a header may claim, and names a bounded number of them."""
    import fsspec

    from airflow_savedmodel.format import bundle
    from airflow_savedmodel.format.validate import MAX_SHARD_FINDINGS, validate

    path = model_copy("tf2_module")
    index = path / "variables" / "variables.index"
    items = list(sstable.read_table(index.read_bytes(), "i"))
    header = tensor_bundle_pb2.BundleHeaderProto.FromString(items[0][1])
    header.num_shards = bundle.MAX_SHARDS
    index.write_bytes(sstable.build_table([(b"", header.SerializeToString()), *items[1:]]))
    asked: list[str] = []
    original = fsspec.implementations.local.LocalFileSystem.size

    def size(self: Any, path: str) -> int:
        asked.append(path)
        return int(original(self, path))

    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "size", size)
    report = validate(str(path), deep=True)
    missing = [f for f in report.findings if f.code == "variables-shard-missing"]
    assert len(missing) == MAX_SHARD_FINDINGS + 1, [f.message for f in missing]
    assert missing[-1].message == (
        f"and {bundle.MAX_SHARDS - MAX_SHARD_FINDINGS} more of the {bundle.MAX_SHARDS} data shards "
        "the index declares do not exist (0 do)"
    )
    assert len(asked) < 10, asked[:20]
