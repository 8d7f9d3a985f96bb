"""What we write, TensorFlow loads: bundles, builder output, transforms, servables and fingerprints."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from airflow_savedmodel.errors import WriteError
from airflow_savedmodel.format import attrs, fingerprint, transforms
from airflow_savedmodel.format.builder import SavedModelBuilder
from airflow_savedmodel.format.bundle import BundleWriter, write_bundle
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, build_dense_meta_graph, export_dense_model, forward
from airflow_savedmodel.protos import meta_graph_pb2

import tf_zoo
from interop import tf_oracle
from interop.test_read_matches_tensorflow import assert_same_values

pytestmark = pytest.mark.interop
LOCAL = fsspec.filesystem("file")


@pytest.mark.parametrize(
    "name", ["tf2_module", "all_dtypes", "keras_export", "tf1_builder", "tf1_partitioned"]
)
def test_bundle_writer_is_byte_identical_to_tensorflow(
    name: str, zoo: dict[str, Path], tmp_path: Path
) -> None:
    with SavedModel.open(str(zoo[name])) as model:
        bundle = model.variables()
        assert bundle is not None
        prefix = str(tmp_path / "variables")
        writer = BundleWriter(LOCAL, prefix)
        order = sorted([*bundle.entries(), *bundle._slice_entries.values()], key=lambda e: e.offset)
        for entry in order:
            if entry.name in bundle and bundle.entry(entry.name).partitioned:
                continue
            if entry.name in bundle:
                writer.add(entry.name, bundle._read_entry(entry), entry.dtype)
            else:
                full = next(
                    e
                    for e in bundle.entries()
                    if e.partitioned and any(s is entry for s in bundle.slice_entries(e.name))
                )
                extents = next(
                    x for x, s in zip(full.slices, bundle.slice_entries(full.name), strict=True) if s is entry
                )
                writer.add_slice(full.name, full.shape, extents, bundle._read_entry(entry))
        writer.finish()
        assert Path(prefix + ".index").read_bytes() == bundle.index_bytes
        assert Path(prefix + ".data-00000-of-00001").read_bytes() == Path(bundle.data_files()[0]).read_bytes()


def test_tensorflow_reads_every_dtype_we_write(tmp_path: Path) -> None:
    import ml_dtypes

    values: dict[str, Any] = {
        "f16": np.array([1.5, -2.0], np.float16),
        "bf16": np.array([[1.5], [-3.25]], ml_dtypes.bfloat16),
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64": np.array(np.pi),
        "c64": np.array([1 + 2j], np.complex64),
        "c128": np.array([[3 - 4j]], np.complex128),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 4), np.float32),
        "strings": np.array([b"", b"x" * 100_000, bytes(range(256)), "é".encode()], dtype=object),
        "string_scalar": np.array(b"hello", dtype=object),
    }
    for bits in (8, 16, 32, 64):
        values[f"i{bits}"] = np.array([-(2 ** (bits - 1)), 0, 2 ** (bits - 1) - 1], f"int{bits}")
        values[f"u{bits}"] = np.array([0, 2**bits - 1], f"uint{bits}")
    write_bundle(str(tmp_path / "ckpt"), values)
    theirs = tf_oracle.checkpoint_values(tmp_path / "ckpt")
    assert set(theirs) == set(values)
    for name, value in values.items():
        assert_same_values(np.asarray(value), theirs[name], name)


def test_partitioned_slices_we_write_are_assembled_by_tensorflow(tmp_path: Path) -> None:
    full = np.arange(21, dtype=np.float32).reshape(7, 3)
    with BundleWriter(LOCAL, str(tmp_path / "ckpt")) as writer:
        writer.add_slice("p", (7, 3), ((0, 3), (0, -1)), full[0:3])
        writer.add_slice("p", (7, 3), ((3, 4), (0, -1)), full[3:7])
        writer.add("plain", np.ones(2, np.int64))
    theirs = tf_oracle.checkpoint_values(tmp_path / "ckpt")
    np.testing.assert_array_equal(theirs["p"], full)


def _layers(rng: np.random.Generator, sizes: list[int], activations: list[str]) -> list[DenseLayer]:
    return [
        DenseLayer(
            rng.standard_normal((a, b)).astype(np.float32), rng.standard_normal(b).astype(np.float32), act
        )
        for a, b, act in zip(sizes[:-1], sizes[1:], activations, strict=True)
    ]


@pytest.mark.parametrize(
    "activations", [["relu", "softmax"], ["tanh", "sigmoid"], ["linear", "linear"], ["sigmoid", "relu"]]
)
def test_servable_export_loads_both_ways_with_numpy_outputs(activations: list[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(len(activations[0]))
    layers = _layers(rng, [5, 7, 3], activations)
    url = export_dense_model(str(tmp_path / "m"), layers, classify=True, class_labels=["a", "b", "c"])
    x = rng.standard_normal((6, 5)).astype(np.float32)
    expected = forward(layers, x)
    tf1 = tf_oracle.run_tf1(url, ["serve"], "serving_default", {"x": x})
    np.testing.assert_allclose(tf1["y"], expected, atol=1e-5)
    tf2 = tf_oracle.run_tf2(url, "serving_default", {"x": x})
    np.testing.assert_allclose(tf2["y"], expected, atol=1e-5)
    examples = [tf_oracle.example({"x": row}) for row in x]
    classified = tf_oracle.run_tf1(url, ["serve"], "classify", {"inputs": examples})
    np.testing.assert_allclose(classified["scores"], expected, atol=1e-5)
    assert classified["classes"].tolist() == [[b"a", b"b", b"c"]] * 6


def test_servable_regress_signature(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    layers = _layers(rng, [4, 1], ["linear"])
    url = export_dense_model(str(tmp_path / "m"), layers, regress=True, tags=("serve", "cpu"))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out = tf_oracle.run_tf1(
        url, ["cpu", "serve"], "regress", {"inputs": [tf_oracle.example({"x": r}) for r in x]}
    )
    np.testing.assert_allclose(out["outputs"], forward(layers, x)[:, 0], atol=1e-5)
    with SavedModel.open(url) as model:
        assert model.meta_graph("serve,cpu").proto.meta_info_def.stripped_default_attrs


def test_servable_rejects_bad_layers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="does not feed"):
        export_dense_model(
            str(tmp_path / "a"), _layers(rng, [3, 4], ["relu"]) + _layers(rng, [5, 2], ["relu"])
        )
    with pytest.raises(ValueError, match="one output unit"):
        build_dense_meta_graph(_layers(rng, [3, 2], ["relu"]), regress=True)
    with pytest.raises(ValueError, match="activation 'gelu'"):
        DenseLayer(np.ones((2, 2)), np.ones(2), "gelu")


def test_builder_several_meta_graphs_sharing_variables_and_assets(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    layers = _layers(rng, [3, 2], ["softmax"])
    meta, values = build_dense_meta_graph(layers)
    vocab_a = tmp_path / "src_a" / "vocab.txt"
    vocab_b = tmp_path / "src_b" / "vocab.txt"
    for path, text in ((vocab_a, "first\n"), (vocab_b, "second\n")):
        path.parent.mkdir()
        path.write_text(text)
    for name, path in (("vocab_path", vocab_a), ("vocab_path_b", vocab_b)):
        node = meta.graph_def.node.add(name=name, op="Const")
        node.attr["dtype"].type = 7
        node.attr["value"].tensor.dtype = 7
        node.attr["value"].tensor.tensor_shape.SetInParent()
        node.attr["value"].tensor.string_val.append(str(path).encode())
    out = tmp_path / "built"
    builder = SavedModelBuilder(str(out))
    builder.add_meta_graph_and_variables(
        ["serve"], meta, variables=values, assets={"vocab_path:0": str(vocab_a)}
    )
    builder.add_meta_graph(
        ["serve", "gpu"], meta, assets={"vocab_path_b:0": str(vocab_b)}, clear_devices=True
    )
    builder.add_meta_graph(["train"], meta, strip_default_attrs=True)
    with pytest.raises(WriteError, match=r"tag set \{gpu, serve\} already exists"):
        builder.add_meta_graph(["gpu", "serve"], meta)
    with pytest.raises(WriteError, match="already saved"):
        builder.add_meta_graph_and_variables(["eval"], meta, variables=values)
    builder.save()
    assert (
        out / "assets" / "vocab.txt"
    ).read_text() == "first\n"  # of two same-named assets the first is kept
    assert sorted(p.name for p in out.iterdir()) == [
        "assets",
        "fingerprint.pb",
        "saved_model.pb",
        "variables",
    ]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for tags in (["serve"], ["serve", "gpu"], ["train"]):
        np.testing.assert_allclose(
            tf_oracle.run_tf1(out, tags, "serving_default", {"x": x})["y"], forward(layers, x), atol=1e-5
        )
    with SavedModel.open(str(out)) as model:
        assert [a.filename for a in model.meta_graph("serve").assets()] == ["vocab.txt"]
        assert [a.filename for a in model.meta_graph("gpu,serve").assets()] == ["vocab.txt"]
    truth = tf_zoo.truth(out)
    assert [m["assets"] for m in truth["meta_graphs"]] == [["vocab.txt"], ["vocab.txt"], []]


def test_builder_refuses_bad_input(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(WriteError, match="already exists and is not empty"):
        SavedModelBuilder(str(tmp_path / "busy"))
    meta, _ = build_dense_meta_graph(_layers(np.random.default_rng(0), [2, 1], ["linear"]))
    builder = SavedModelBuilder(str(tmp_path / "new"))
    with pytest.raises(WriteError, match="call add_meta_graph_and_variables"):
        builder.add_meta_graph(["serve"], meta)
    bad = meta_graph_pb2.SignatureDef()
    bad.inputs["x"].name = "x:0"
    with pytest.raises(WriteError, match="has no dtype"):
        builder.add_meta_graph_and_variables(["serve"], meta, signature_def_map={"broken": bad})
    with pytest.raises(WriteError, match="is reserved"):
        builder.add_meta_graph_and_variables(
            ["serve"], meta, signature_def_map={"__saved_model_init_op": bad}
        )
    with pytest.raises(WriteError, match="no op named 'nope'"):
        builder.add_meta_graph_and_variables(["serve"], meta, init_op="nope")


def test_builder_pbtxt_output_loads(tmp_path: Path) -> None:
    layers = _layers(np.random.default_rng(1), [2, 2], ["relu"])
    meta, values = build_dense_meta_graph(layers)
    builder = SavedModelBuilder(str(tmp_path / "m"))
    builder.add_meta_graph_and_variables("serve", meta, variables=values)
    builder.save(as_text=True)
    assert (tmp_path / "m" / "saved_model.pbtxt").exists()
    x = np.ones((1, 2), np.float32)
    np.testing.assert_allclose(
        tf_oracle.run_tf1(tmp_path / "m", ["serve"], "serving_default", {"x": x})["y"],
        forward(layers, x),
        atol=1e-5,
    )


def _graph_attrs(meta: Any) -> dict[str, dict[str, bytes]]:
    nodes = list(meta.graph_def.node) + [n for f in meta.graph_def.library.function for n in f.node_def]
    prefix = {id(n): "" for n in meta.graph_def.node}
    return {
        prefix.get(id(n), "fn:") + n.name: {
            k: v.SerializeToString(deterministic=True) for k, v in n.attr.items()
        }
        for n in nodes
    }


def test_strip_equals_tensorflows_own_tf1_stripping(zoo: dict[str, Path]) -> None:
    with (
        SavedModel.open(str(zoo["tf1_unstripped"])) as ours,
        SavedModel.open(str(zoo["tf1_stripped"])) as theirs,
    ):
        mine = meta_graph_pb2.MetaGraphDef()
        mine.CopyFrom(ours.meta_graphs[0].proto)
        assert any(n.device for n in mine.graph_def.node)
        stats = attrs.strip_default_attrs(mine)
        attrs.clear_devices(mine)
        assert stats.changed > 10 and not stats.unknown_ops
        assert _graph_attrs(mine) == _graph_attrs(theirs.meta_graphs[0].proto)
        # Node for node equal (TF's clear_devices export also leaves an empty library behind).
        assert list(mine.graph_def.node) == list(theirs.meta_graphs[0].proto.graph_def.node)
        assert mine.meta_info_def.stripped_default_attrs


@pytest.mark.parametrize("name", ["tf2_module", "keras_export", "tf1_builder"])
def test_strip_equals_tensorflows_strip_on_functions_too(name: str, zoo: dict[str, Path]) -> None:
    from tensorflow.core.protobuf import meta_graph_pb2 as tf_meta
    from tensorflow.python.framework import meta_graph as tf_meta_graph

    with SavedModel.open(str(zoo[name])) as model:
        for mg in model.meta_graphs:
            full = meta_graph_pb2.MetaGraphDef()
            full.CopyFrom(mg.proto)
            added = attrs.add_default_attrs(full)
            assert added.changed > 0 or not mg.proto.meta_info_def.stripped_default_attrs
            theirs = tf_meta.MetaGraphDef.FromString(full.SerializeToString())
            tf_meta_graph.strip_graph_default_valued_attrs(theirs)
            attrs.strip_default_attrs(full)
            assert _graph_attrs(full) == _graph_attrs(
                meta_graph_pb2.MetaGraphDef.FromString(theirs.SerializeToString())
            )
            if mg.proto.meta_info_def.stripped_default_attrs:
                assert full.graph_def == mg.proto.graph_def  # add then strip is lossless


def test_whole_model_strip_and_clear_devices_keep_outputs(zoo: dict[str, Path], tmp_path: Path) -> None:
    src = zoo["tf1_unstripped"]
    before = (src / "saved_model.pb").read_bytes()
    result = transforms.strip_default_attrs(str(src), str(tmp_path / "stripped"))
    assert result.changed > 10
    transforms.clear_devices(str(tmp_path / "stripped"), str(tmp_path / "cleared"))
    images = np.random.default_rng(2).standard_normal((2, 8, 8, 1)).astype(np.float32)
    expected = tf_oracle.run_tf1(src, ["serve"], "serving_default", {"images": images})["probs"]
    for out in ("stripped", "cleared"):
        got = tf_oracle.run_tf1(tmp_path / out, ["serve"], "serving_default", {"images": images})["probs"]
        np.testing.assert_array_equal(got, expected)
    with SavedModel.open(str(tmp_path / "cleared")) as model:
        assert not any(n.device for n in model.meta_graphs[0].proto.graph_def.node)
        assert model.fingerprint is not None
    assert (src / "saved_model.pb").read_bytes() == before
    assert (tmp_path / "stripped" / "variables" / "variables.index").read_bytes() == (
        src / "variables" / "variables.index"
    ).read_bytes()
    with pytest.raises(WriteError, match="destination exists"):
        transforms.strip_default_attrs(str(src), str(tmp_path / "stripped"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_tf2_model_round_trip_add_then_strip_keeps_outputs(zoo: dict[str, Path], tmp_path: Path) -> None:
    src = zoo["tf2_module"]
    transforms.add_default_attrs(str(src), str(tmp_path / "full"))
    transforms.strip_default_attrs(str(tmp_path / "full"), str(tmp_path / "stripped"))
    x = np.random.default_rng(4).standard_normal((3, 3)).astype(np.float32)
    expected = tf_oracle.run_tf2(src, "serving_default", {"x": x})["y"]
    for out in ("full", "stripped"):
        np.testing.assert_array_equal(
            tf_oracle.run_tf2(tmp_path / out, "serving_default", {"x": x})["y"], expected
        )
        ids = tf_oracle.run_tf2(tmp_path / out, "lookup", {"words": np.array([b"cherry", b"kiwi"])})["ids"]
        assert ids.tolist() == [2, -1]
    with SavedModel.open(str(tmp_path / "stripped")) as stripped, SavedModel.open(str(src)) as original:
        assert stripped.proto == original.proto


@pytest.mark.parametrize("name", ["tf2_module", "keras_export", "all_dtypes", "sharded"])
def test_fingerprint_equals_tensorflows_file(name: str, zoo: dict[str, Path]) -> None:
    with SavedModel.open(str(zoo[name])) as model:
        bundle = model.variables()
        ours = fingerprint.compute(model.proto, bundle.index_bytes if bundle else None)
        theirs = model.fingerprint
        assert theirs is not None
        for field in fingerprint.HASH_FIELDS:
            assert getattr(ours, field) == getattr(theirs, field), field
        assert ours.version == theirs.version


def test_fingerprints_we_write_equal_what_tensorflow_computes(zoo: dict[str, Path], tmp_path: Path) -> None:
    layers = _layers(np.random.default_rng(9), [3, 2], ["relu"])
    written = [
        export_dense_model(str(tmp_path / "dense"), layers, classify=True),
        transforms.strip_default_attrs(str(zoo["tf1_builder"]), str(tmp_path / "tf1")).dst,
        transforms.add_default_attrs(str(zoo["keras_export"]), str(tmp_path / "keras")).dst,
    ]
    for url in written:
        with SavedModel.open(url) as model:
            ours = model.fingerprint
            theirs = tf_oracle.tf_fingerprint(url)
            assert ours is not None
            for field in fingerprint.HASH_FIELDS:
                assert getattr(ours, field) == getattr(theirs, field), (url, field)


@pytest.mark.parametrize("name", list(tf_zoo.BUILDERS))
def test_read_write_read_is_lossless(name: str, zoo: dict[str, Path], tmp_path: Path, truth: Any) -> None:
    out = tmp_path / "copy"
    transforms.rewrite(str(zoo[name]), str(out), lambda mg: attrs.RewriteStats(0, 0))
    with SavedModel.open(str(zoo[name])) as a, SavedModel.open(str(out)) as b:
        assert a.proto == b.proto
        assert a.saved_model_file == b.saved_model_file
    again = tf_zoo.truth(out)
    expected = truth(name)
    assert again["meta_graphs"] == expected["meta_graphs"]
    assert set(again["variables"]) == set(expected["variables"])
    for var, value in expected["variables"].items():
        assert_same_values(
            np.asarray(again["variables"][var]["value"])
            if not isinstance(value["value"], bytes)
            else np.array(again["variables"][var]["value"], dtype=object),
            value["value"],
            var,
        )


def test_transform_into_memory_filesystem(zoo: dict[str, Path]) -> None:
    mem = fsspec.filesystem("memory")
    try:
        transforms.clear_devices(str(zoo["tf1_builder"]), "memory://out/cleared")
        with SavedModel.open("memory://out/cleared") as model:
            assert len(model.meta_graphs) == 3
            assert model.variables() is not None
    finally:
        if mem.exists("/out"):
            mem.rm("/out", recursive=True)


def test_failed_write_leaves_destination_and_source_as_they_were(
    zoo: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_savedmodel import location

    src = tmp_path / "src"
    shutil.copytree(zoo["tf2_module"], src)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    real_copy = location.copy_file
    calls = []

    def failing_copy(*args: Any, **kwargs: Any) -> int:
        calls.append(args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(location, "copy_file", failing_copy)
    with pytest.raises(WriteError, match="No space left on device"):
        transforms.strip_default_attrs(str(src), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep").write_text("old")
    calls.clear()
    with pytest.raises(WriteError):
        transforms.strip_default_attrs(str(src), str(tmp_path / "dst"), overwrite=True)
    assert [p.name for p in (tmp_path / "dst").iterdir()] == ["keep"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
