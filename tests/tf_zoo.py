"""Real SavedModels written by real TensorFlow at test time, and what TensorFlow reads back from them.

Imported only by tests (it imports TensorFlow). Each builder writes one model kind that users
ship: TF2 modules, Keras 3 exports, TF1 SavedModelBuilder models with several meta graphs and
assets, text protos, every dtype, partitioned variables and multi-shard bundles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2 as tf_types
from tensorflow.core.protobuf import meta_graph_pb2 as tf_meta
from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model

v1 = tf.compat.v1
VOCAB = ["apple", "banana", "cherry", "date"]


def _vocab_file(directory: Path, name: str = "vocab.txt", words: list[str] = VOCAB) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("\n".join(words) + "\n")
    return str(path)


class _TwoSignatures(tf.Module):
    def __init__(self, vocab_path: str) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.standard_normal((3, 2)).astype(np.float32), name="w")
        self.b = tf.Variable(np.array([0.25, -0.5], np.float32), name="b")
        self.step = tf.Variable(7, dtype=tf.int64, name="step")
        self.label = tf.Variable("model-label", name="label")
        self.vocab = tf.saved_model.Asset(vocab_path)
        init = tf.lookup.TextFileInitializer(
            self.vocab,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self.table = tf.lookup.StaticHashTable(init, -1)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def lookup(self, words: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"ids": self.table.lookup(words)}


def tf2_module(out: Path) -> None:
    module = _TwoSignatures(_vocab_file(out.parent / "src_tf2_module"))
    tf.saved_model.save(
        module, str(out), signatures={"serving_default": module.predict, "lookup": module.lookup}
    )


def keras_export(out: Path) -> None:
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.export(str(out), verbose=False)


def _tf1_graph(workdir: Path) -> tuple[tf.Graph, dict[str, Any]]:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w = v1.get_variable("dense/kernel", initializer=np.arange(6, dtype=np.float32).reshape(3, 2) / 10)
        b = v1.get_variable("dense/bias", initializer=np.array([0.5, -0.5], np.float32))
        logits = tf.add(tf.matmul(x, w), b, name="logits")
        scores = tf.nn.softmax(logits, name="scores")
        value = tf.reduce_sum(logits, axis=1, name="value")
        vocab = tf.constant(_vocab_file(workdir / "src_tf1", "vocab.txt"), name="vocab_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, vocab)
        other = tf.constant(
            _vocab_file(workdir / "src_tf1", "labels.txt", ["neg", "pos"]), name="labels_path"
        )
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, other)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                vocab,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            -1,
        )
        labels = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                other,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            "unknown",
        )
        words = v1.placeholder(tf.string, [None], name="words")
        ids = table.lookup(words)
        classes = labels.lookup(tf.argmax(logits, axis=1))
        step = v1.train.get_or_create_global_step()
        train_op = v1.assign_add(step, 1, name="train_step")
        utils = v1.saved_model.utils
        sigs = v1.saved_model.signature_def_utils
        consts = v1.saved_model.signature_constants
        predict = sigs.predict_signature_def({"x": x, "words": words}, {"scores": scores, "ids": ids})
        classify = sigs.build_signature_def(
            {consts.CLASSIFY_INPUTS: utils.build_tensor_info(x)},
            {
                consts.CLASSIFY_OUTPUT_CLASSES: utils.build_tensor_info(classes),
                consts.CLASSIFY_OUTPUT_SCORES: utils.build_tensor_info(scores),
            },
            consts.CLASSIFY_METHOD_NAME,
        )
        regress = sigs.build_signature_def(
            {consts.REGRESS_INPUTS: utils.build_tensor_info(x)},
            {consts.REGRESS_OUTPUTS: utils.build_tensor_info(value)},
            consts.REGRESS_METHOD_NAME,
        )
        lookup = sigs.predict_signature_def({"words": words}, {"ids": ids})
        sparse = v1.sparse_placeholder(tf.float32, shape=[None, 3], name="sparse_x")
        ragged = tf.RaggedTensor.from_row_lengths(
            v1.placeholder(tf.float32, [None], name="ragged_values"),
            v1.placeholder(tf.int64, [None], name="ragged_lengths"),
        )
        composite = sigs.build_signature_def(
            {"sparse": utils.build_tensor_info(sparse), "ragged": utils.build_tensor_info(ragged)},
            {
                "sparse_sum": utils.build_tensor_info(tf.sparse.reduce_sum(sparse, axis=1)),
                "ragged_sum": utils.build_tensor_info(tf.reduce_sum(ragged, axis=1)),
            },
            consts.PREDICT_METHOD_NAME,
        )
        return graph, {
            "serve": {
                "serving_default": predict,
                "classify": classify,
                "regress": regress,
                "lookup": lookup,
                "composite": composite,
            },
            "train": {"train": sigs.predict_signature_def({"x": x}, {"loss": value})},
            "train_op": train_op,
        }


def _tf1_builder(out: Path, as_text: bool) -> None:
    graph, sig = _tf1_graph(out.parent)
    with graph.as_default(), v1.Session(graph=graph) as sess:
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(out))
        assets = v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS)
        builder.add_meta_graph_and_variables(
            sess,
            ["serve"],
            signature_def_map=sig["serve"],
            assets_collection=assets,
            main_op=v1.tables_initializer(),
            strip_default_attrs=False,
        )
        builder.add_meta_graph(["train"], signature_def_map=sig["train"], assets_collection=assets)
        builder.add_meta_graph(
            ["serve", "gpu"],
            signature_def_map=sig["serve"],
            assets_collection=assets,
            clear_devices=True,
            strip_default_attrs=True,
        )
        builder.save(as_text=as_text)


def tf1_builder(out: Path) -> None:
    _tf1_builder(out, as_text=False)


def tf1_builder_pbtxt(out: Path) -> None:
    _tf1_builder(out, as_text=True)


class _AllDtypes(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        f = np.array([[1.5, -2.25, 3.0], [0.0, 1e-3, -7.5]])
        self.v_half = tf.Variable(f.astype(np.float16))
        self.v_bfloat16 = tf.Variable(tf.constant(f, tf.bfloat16))
        self.v_float = tf.Variable(f.astype(np.float32))
        self.v_double = tf.Variable(f * np.pi)
        for bits in (8, 16, 32, 64):
            setattr(
                self,
                f"v_int{bits}",
                tf.Variable(np.array([-(2 ** (bits - 1)), -1, 0, 2 ** (bits - 1) - 1], f"int{bits}")),
            )
            setattr(self, f"v_uint{bits}", tf.Variable(np.array([0, 1, 2**bits - 1], f"uint{bits}")))
        self.v_bool = tf.Variable([[True, False], [False, True]])
        self.v_complex64 = tf.Variable(np.array([1 + 2j, -3.5 - 0.5j], np.complex64))
        self.v_complex128 = tf.Variable(np.array([[1e-300 + 2j], [-3.5 + 1e300j]], np.complex128))
        self.v_string = tf.Variable([b"", b"a", b"x" * 70000, bytes(range(256)), "héllo".encode()])
        self.v_scalar = tf.Variable(42.0, dtype=tf.float64)
        self.v_string_scalar = tf.Variable(b"")
        self.v_empty = tf.Variable(np.zeros((0, 3), np.float32))
        self.v_empty_string = tf.Variable(tf.zeros([0], tf.string))

    @tf.function(input_signature=[])
    def total(self) -> dict[str, tf.Tensor]:
        return {"sum": tf.reduce_sum(self.v_float)}


def all_dtypes(out: Path) -> None:
    module = _AllDtypes()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.total})


def tf1_partitioned(out: Path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        p = v1.get_variable(
            "p",
            shape=[6, 2],
            initializer=v1.random_normal_initializer(seed=1),
            partitioner=v1.fixed_size_partitioner(2),
        )
        q = v1.get_variable(
            "emb/q",
            shape=[7, 3],
            dtype=tf.int64,
            initializer=v1.random_uniform_initializer(0, 1000, dtype=tf.int64, seed=3),
            partitioner=v1.fixed_size_partitioner(3),
        )
        r = v1.get_variable("r", initializer=np.ones((2, 2), np.float32))
        y = tf.matmul(x, tf.transpose(tf.concat(list(p), 0)), name="y")
        z = tf.reduce_sum(tf.concat(list(q), 0)) + tf.cast(tf.reduce_sum(r), tf.int64)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            sig = v1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y, "z": z})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()


class _ManyVariables(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vs = [tf.Variable(np.full((5, 5), i, np.float32), name=f"v{i}") for i in range(6)]

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def total(self, scale: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"sum": scale * tf.add_n([tf.reduce_sum(v) for v in self.vs])}


def sharded(out: Path) -> None:
    module = _ManyVariables()
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=250)
    options = tf.saved_model.SaveOptions(experimental_sharding_callback=policy)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.total}, options=options)


def _tf1_conv_model(out: Path, strip: bool) -> None:
    """A TF1 graph rich in default-valued attrs (conv, pooling, matmul), some ops pinned to a device."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        with tf.device("/device:CPU:0"):
            kernel = v1.get_variable(
                "conv/kernel", initializer=np.linspace(-1, 1, 18, dtype=np.float32).reshape(3, 3, 1, 2)
            )
        conv = tf.nn.relu(tf.nn.conv2d(images, kernel, strides=1, padding="SAME"), name="conv/relu")
        pooled = tf.nn.max_pool2d(conv, 2, 2, "VALID", name="pool")
        flat = tf.reshape(pooled, [-1, 32], name="flat")
        dense = v1.get_variable(
            "dense/kernel", initializer=np.linspace(-0.5, 0.5, 64, dtype=np.float32).reshape(32, 2)
        )
        logits = tf.matmul(flat, dense, name="logits")
        probs = tf.nn.softmax(logits, name="probs")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            sig = v1.saved_model.signature_def_utils.predict_signature_def(
                {"images": images}, {"probs": probs}
            )
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={"serving_default": sig},
                strip_default_attrs=strip,
                clear_devices=strip,
            )
            builder.save()


def tf1_unstripped(out: Path) -> None:
    _tf1_conv_model(out, strip=False)


def tf1_stripped(out: Path) -> None:
    _tf1_conv_model(out, strip=True)


BUILDERS = {
    "tf2_module": tf2_module,
    "keras_export": keras_export,
    "tf1_builder": tf1_builder,
    "tf1_builder_pbtxt": tf1_builder_pbtxt,
    "all_dtypes": all_dtypes,
    "tf1_partitioned": tf1_partitioned,
    "sharded": sharded,
    "tf1_unstripped": tf1_unstripped,
    "tf1_stripped": tf1_stripped,
}


def build_all(root: Path) -> dict[str, Path]:
    paths = {}
    for name, builder in BUILDERS.items():
        out = root / name / "model"
        if not (out / "saved_model.pb").exists() and not (out / "saved_model.pbtxt").exists():
            builder(out)
        paths[name] = out
    return paths


# ---- what TensorFlow reads ------------------------------------------------------------------


def read_proto(path: Path) -> tf_saved_model.SavedModel:
    proto = tf_saved_model.SavedModel()
    if (path / "saved_model.pb").exists():
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    return proto


def _tensor_info(info: tf_meta.TensorInfo) -> dict[str, Any]:
    shape = None
    if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
        shape = tuple(d.size for d in info.tensor_shape.dim)
    encoding = info.WhichOneof("encoding")
    return {
        "dtype": tf_types.DataType.Name(info.dtype),
        "shape": shape,
        "name": info.name if encoding == "name" else None,
        "encoding": {"name": "dense", "coo_sparse": "coo_sparse", "composite_tensor": "composite"}.get(
            encoding or "name"
        ),
    }


def truth(path: Path) -> dict[str, Any]:
    """Everything the tests compare, as TensorFlow itself reads it."""
    proto = read_proto(path)
    metas = []
    for mg in proto.meta_graphs:
        sigs = {
            key: {
                "method_name": s.method_name,
                "inputs": {k: _tensor_info(v) for k, v in s.inputs.items()},
                "outputs": {k: _tensor_info(v) for k, v in s.outputs.items()},
            }
            for key, s in mg.signature_def.items()
        }
        assets = [a.filename for a in mg.asset_file_def]
        if not assets and "saved_model_assets" in mg.collection_def:
            for value in mg.collection_def["saved_model_assets"].any_list.value:
                asset = tf_meta.AssetFileDef()
                value.Unpack(asset)
                assets.append(asset.filename)
        ops = set(n.op for n in mg.graph_def.node)
        functions = {f.signature.name for f in mg.graph_def.library.function}
        for f in mg.graph_def.library.function:
            ops.update(n.op for n in f.node_def)
        metas.append(
            {
                "tags": list(mg.meta_info_def.tags),
                "signatures": sigs,
                "assets": assets,
                "ops": sorted(ops - functions),
            }
        )
    variables = {}
    prefix = path / "variables" / "variables"
    if (path / "variables" / "variables.index").exists():
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
        for name, dtype in reader.get_variable_to_dtype_map().items():
            variables[name] = {
                "dtype": dtype.as_datatype_enum,
                "shape": tuple(shapes[name]),
                "value": reader.get_tensor(name),
            }
    return {
        "meta_graphs": metas,
        "variables": variables,
        "assets_dir": sorted(os.listdir(path / "assets")) if (path / "assets").exists() else [],
    }
