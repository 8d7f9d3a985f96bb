"""TensorFlow as the judge of what we write: load a model both ways and run a signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1


def run_tf1(
    path: Path | str, tags: list[str], signature: str, feeds: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Load with the TF1 loader (what TensorFlow Serving runs) and run one signature."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        meta = v1.saved_model.loader.load(sess, tags, str(path))
        sig = meta.signature_def[signature]
        fetches = {k: v.name for k, v in sig.outputs.items()}
        feed = {sig.inputs[k].name: v for k, v in feeds.items()}
        return sess.run(fetches, feed)


def run_tf2(path: Path | str, signature: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    """Load with tf.saved_model.load and call one signature."""
    model = tf.saved_model.load(str(path))
    outputs = model.signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def checkpoint_values(prefix: Path | str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_dtype_map()}


def tf_fingerprint(path: Path | str) -> Any:
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    return fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(path)))


def example(features: dict[str, np.ndarray]) -> bytes:
    feature = {
        k: tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(v))) for k, v in features.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
