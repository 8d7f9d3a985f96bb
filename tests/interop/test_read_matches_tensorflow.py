"""What the format core reads from TensorFlow-written models equals what TensorFlow reads."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import snappy as reference_snappy

from airflow_savedmodel.errors import MetaGraphNotFoundError, SignatureNotFoundError
from airflow_savedmodel.format import sstable
from airflow_savedmodel.format.crc import crc32c, mask
from airflow_savedmodel.format.model import SavedModel

import tf_zoo

pytestmark = pytest.mark.interop
MODELS = list(tf_zoo.BUILDERS)


def _spec_json(spec: Any) -> dict[str, Any]:
    return {"dtype": spec.dtype, "shape": spec.shape, "name": spec.tensor_name, "encoding": spec.encoding}


def assert_same_values(ours: np.ndarray, theirs: Any, name: str) -> None:
    if isinstance(theirs, bytes):
        assert ours.shape == () and ours.item() == theirs, name
        return
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, name
    if ours.dtype == object:
        assert ours.tolist() == theirs.tolist(), name
    else:
        assert ours.dtype == theirs.dtype, (name, ours.dtype, theirs.dtype)
        assert ours.tobytes() == theirs.tobytes(), name


@pytest.mark.parametrize("name", MODELS)
def test_meta_graphs_signatures_assets_and_ops(name: str, zoo: dict[str, Path], truth: Any) -> None:
    expected = truth(name)
    with SavedModel.open(str(zoo[name])) as model:
        assert [list(mg.tags) for mg in model.meta_graphs] == [m["tags"] for m in expected["meta_graphs"]]
        for mg, tm in zip(model.meta_graphs, expected["meta_graphs"], strict=True):
            ours = {
                key: {
                    "method_name": sig.method_name,
                    "inputs": {k: _spec_json(v) for k, v in sig.inputs.items()},
                    "outputs": {k: _spec_json(v) for k, v in sig.outputs.items()},
                }
                for key, sig in mg.signatures.items()
            }
            assert ours == tm["signatures"]
            assert [a.filename for a in mg.assets()] == tm["assets"]
            assert mg.op_types() == tm["ops"]
        assert model.list_files("assets") == expected["assets_dir"]


@pytest.mark.parametrize("name", MODELS)
def test_every_variable_equals_tensorflows(name: str, zoo: dict[str, Path], truth: Any) -> None:
    expected = truth(name)["variables"]
    with SavedModel.open(str(zoo[name])) as model:
        bundle = model.variables()
        assert bundle is not None
        assert set(bundle.names()) == set(expected)
        for var in bundle.names():
            entry = bundle.entry(var)
            assert entry.dtype == expected[var]["dtype"], var
            assert entry.shape == expected[var]["shape"], var
            assert_same_values(bundle.read(var), expected[var]["value"], var)


def test_every_dtype_is_covered(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["all_dtypes"])) as model:
        names = {e.dtype_name for e in model.variables().entries()}  # type: ignore[union-attr]
    for dtype in (
        "HALF",
        "BFLOAT16",
        "FLOAT",
        "DOUBLE",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "BOOL",
        "COMPLEX64",
        "COMPLEX128",
        "STRING",
    ):
        assert f"DT_{dtype}" in names


def test_tf1_builder_meta_graph_selection_and_tf1_details(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["tf1_builder"])) as model:
        assert model.tag_sets == [("serve",), ("train",), ("gpu", "serve")]
        assert model.meta_graph("gpu,serve").index == 2
        assert model.meta_graph(["serve"]).index == 0
        with pytest.raises(
            MetaGraphNotFoundError, match=r"available tag sets: 'serve', 'train', 'gpu, serve'"
        ):
            model.meta_graph("serve,tpu")
        serve = model.meta_graph("serve")
        assert serve.signature("classify").method_name == "tensorflow/serving/classify"
        assert serve.signature("regress").method_name == "tensorflow/serving/regress"
        assert serve.signature("serving_default").inputs["x"].shape == (-1, 3)
        with pytest.raises(
            SignatureNotFoundError, match="choose from: classify, composite, lookup, regress, serving_default"
        ):
            serve.signature("missing")
        assert {a.source for a in serve.assets()} == {"collection"}
        assert model.fingerprint is None
        assert not model.proto.meta_graphs[0].meta_info_def.stripped_default_attrs
        assert model.proto.meta_graphs[2].meta_info_def.stripped_default_attrs


def test_partitioned_variables_are_assembled(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["tf1_partitioned"])) as model:
        bundle = model.variables()
        assert bundle is not None
        assert bundle.entry("p").partitioned and bundle.entry("p").shape == (6, 2)
        assert len(bundle.slice_entries("emb/q")) == 3
        assert bundle.read("emb/q").shape == (7, 3)


def test_several_shards(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["sharded"])) as model:
        bundle = model.variables()
        assert bundle is not None and bundle.num_shards == 3
        assert {e.shard_id for e in bundle.entries()} == {0, 1, 2}


def test_tf2_object_graph_entry(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["tf2_module"])) as model:
        graph = model.variables().object_graph()  # type: ignore[union-attr]
        keys = {a.checkpoint_key for node in graph.nodes for a in node.attributes}
        assert "w/.ATTRIBUTES/VARIABLE_VALUE" in keys
        assert model.fingerprint is not None and model.fingerprint.checkpoint_hash != 0


def _snappy_table(data: bytes) -> bytes:
    """Rewrite a TF-written index with every block Snappy-compressed, as other TF builds write them."""
    items = list(sstable.read_table(data, "src"))
    plain = sstable.build_table(items)
    assert plain == data, "our table builder should reproduce TensorFlow's index byte for byte"
    footer = plain[-sstable.FOOTER_SIZE :]
    # Re-encode: compress each data block and rebuild the index block with new handles.
    out = bytearray()
    handles = []

    def put(block: bytes, compress: bool) -> tuple[int, int]:
        payload, ctype = (reference_snappy.compress(block), 1) if compress else (block, 0)
        offset = len(out)
        out.extend(payload + bytes([ctype]))
        out.extend(struct.pack("<I", mask(crc32c(payload + bytes([ctype])))))
        return offset, len(payload)

    from airflow_savedmodel.format import varint

    meta_offset, meta_size, pos = _handle(footer, 0)
    index_offset, index_size, _ = _handle(footer, pos)
    index_block = plain[index_offset : index_offset + index_size]
    index_entries = list(sstable._block_entries(index_block, "src", "index"))
    for key, handle in index_entries:
        offset, size, _ = _handle(handle, 0)
        handles.append((key, put(plain[offset : offset + size], compress=True)))
    new_meta = put(plain[meta_offset : meta_offset + meta_size], compress=False)
    builder = sstable._BlockBuilder(1)
    for key, (offset, size) in handles:
        builder.add(key, varint.encode(offset) + varint.encode(size))
    new_index = put(builder.finish(), compress=True)
    tail = (
        varint.encode(new_meta[0])
        + varint.encode(new_meta[1])
        + varint.encode(new_index[0])
        + varint.encode(new_index[1])
    )
    out.extend(tail.ljust(40, b"\0") + plain[-8:])
    return bytes(out)


def _handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    from airflow_savedmodel.format import varint

    offset, pos = varint.decode(buf, pos, "h")
    size, pos = varint.decode(buf, pos, "h")
    return offset, size, pos


@pytest.mark.parametrize("name", ["tf2_module", "all_dtypes", "tf1_partitioned"])
def test_snappy_compressed_index_reads_the_same(name: str, model_copy: Any, truth: Any) -> None:
    path = model_copy(name)
    index = path / "variables" / "variables.index"
    index.write_bytes(_snappy_table(index.read_bytes()))
    with SavedModel.open(str(path)) as model:
        bundle = model.variables()
        for var, expected in truth(name)["variables"].items():
            assert_same_values(bundle.read(var), expected["value"], var)  # type: ignore[union-attr]


def test_reads_from_memory_filesystem(zoo: dict[str, Path], truth: Any) -> None:
    mem = fsspec.filesystem("memory")
    mem.put(str(zoo["tf2_module"]), "/zoo/tf2", recursive=True)
    try:
        with SavedModel.open("memory://zoo/tf2") as model:
            assert model.url == "memory:///zoo/tf2"
            assert model.list_files("assets") == ["vocab.txt"]
            value = model.variables().read("w/.ATTRIBUTES/VARIABLE_VALUE")  # type: ignore[union-attr]
            assert_same_values(
                value, truth("tf2_module")["variables"]["w/.ATTRIBUTES/VARIABLE_VALUE"]["value"], "w"
            )
        with SavedModel.open("file://" + str(zoo["tf2_module"])) as model:
            assert model.meta_graph("serve").tags == ("serve",)
    finally:
        mem.rm("/zoo", recursive=True)


def test_pbtxt_and_pb_read_identically(zoo: dict[str, Path]) -> None:
    with (
        SavedModel.open(str(zoo["tf1_builder"])) as pb,
        SavedModel.open(str(zoo["tf1_builder_pbtxt"])) as txt,
    ):
        assert txt.saved_model_file == "saved_model.pbtxt"
        assert [mg.signatures for mg in pb.meta_graphs] == [mg.signatures for mg in txt.meta_graphs]
        assert [mg.assets() for mg in pb.meta_graphs] == [mg.assets() for mg in txt.meta_graphs]


def test_pb_preferred_over_pbtxt(model_copy: Any, zoo: dict[str, Path]) -> None:
    path = model_copy("tf1_builder")
    shutil.copy(zoo["tf1_builder_pbtxt"] / "saved_model.pbtxt", path / "saved_model.pbtxt")
    with SavedModel.open(str(path)) as model:
        assert model.saved_model_file == "saved_model.pb"


def test_sparse_and_composite_tensor_infos_are_reported(zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo["tf1_builder"])) as model:
        sig = model.meta_graph("serve").signature("composite")
        sparse, ragged = sig.inputs["sparse"], sig.inputs["ragged"]
        assert sparse.encoding == "coo_sparse" and sparse.shape == (-1, 3)
        assert sparse.sparse_tensor_names == {
            "values": "sparse_x/values:0",
            "indices": "sparse_x/indices:0",
            "dense_shape": "sparse_x/shape:0",
        }
        assert ragged.encoding == "composite" and ragged.composite_type == "RaggedTensorSpec"
        assert len(ragged.components) == 2 and ragged.components[0].tensor_name == "ragged_values:0"
        doc = ragged.to_json()
        assert doc["type_spec"] == "RaggedTensorSpec" and len(doc["components"]) == 2
