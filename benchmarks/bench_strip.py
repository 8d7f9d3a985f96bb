"""Stripping default attrs from a 20,000+ node graph: ours against TensorFlow's own strip, same graph."""

from __future__ import annotations

import os

from benchmarks.common import Row, median_time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _big_meta_graph() -> bytes:
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 16], name="x")
        out = x
        for i in range(2500):
            w = tf.constant(np.full((16, 16), 0.01, np.float32), name=f"w{i}")
            out = tf.nn.relu(tf.matmul(out, w) + tf.constant(0.1), name=f"h{i}")
            out = tf.reshape(tf.identity(out), [-1, 16])
        meta = v1.train.export_meta_graph(graph=graph, strip_default_attrs=False)
    assert len(meta.graph_def.node) >= 20_000, len(meta.graph_def.node)
    return meta.SerializeToString()


def run() -> list[Row]:
    from tensorflow.core.protobuf import meta_graph_pb2 as tf_meta
    from tensorflow.python.framework import meta_graph as tf_meta_graph

    from airflow_savedmodel.format import attrs
    from airflow_savedmodel.protos import meta_graph_pb2

    data = _big_meta_graph()
    nodes = len(meta_graph_pb2.MetaGraphDef.FromString(data).graph_def.node)
    registry = attrs.registry_for(meta_graph_pb2.MetaGraphDef.FromString(data))

    def ours() -> None:
        attrs.strip_default_attrs(meta_graph_pb2.MetaGraphDef.FromString(data), registry)

    def theirs() -> None:
        tf_meta_graph.strip_graph_default_valued_attrs(tf_meta.MetaGraphDef.FromString(data))

    return [
        Row(
            f"strip default attrs, {nodes:,} nodes (parse + strip)",
            median_time(ours),
            median_time(theirs),
            "s",
            "tf meta_graph.strip_graph_default_valued_attrs",
        )
    ]
