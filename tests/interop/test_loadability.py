"""Validate's verdict against what TensorFlow does: models TensorFlow 2.21 writes that its loaders
serve, and ones they cannot serve for each reason validate knows (an op without a kernel, a node
pinned to a GPU on a CPU server, a custom op), plus the look-alikes TensorFlow does serve (an
orphan restore function reading a key the bundle lacks, a missing asset no op reads).

The judge is TF Serving's loader: TensorFlow's TF1 session loader, then one request through the
serving signature. Every TF-written model the tests have (the zoo and these) must get the same
verdict from validate (target 2.21, CPU; op policy off: that is a policy, not loadability); the
agreement table is written to test-artifacts/loadability.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.protos import graph_pb2, meta_graph_pb2, types_pb2

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys
from pathlib import Path
import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
root = Path(sys.argv[1])


def tf1(name, build, clear_devices=False, main_op=None, tags=("serve",), key="serving_default",
        user_saver=False):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        w = v1.get_variable("w", initializer=np.array([[1.0], [2.0]], np.float32))
        y = build(x, w)
        if user_saver:  # the user's own checkpoints, beside the builder's saver (save/)
            with tf.name_scope("training"):
                v1.train.Saver(name="checkpoints")
        # Soft placement lets this CPU machine write a graph pinned to a GPU (kept in the NodeDefs).
        config = v1.ConfigProto(allow_soft_placement=True)
        with v1.Session(graph=graph, config=config) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(root / name))
            sig = v1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                sess, list(tags), signature_def_map={key: sig},
                clear_devices=clear_devices, main_op=main_op() if main_op else None,
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            )
            builder.save()


def gpu_pinned(x, w):
    with tf.device("/device:GPU:0"):
        return tf.matmul(x, w, name="pinned_matmul")


def unread_asset(x, w):
    vocab = root / "unread-vocab.txt"
    vocab.write_text("a\nb\n")
    asset = tf.constant(str(vocab), name="asset_path")
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)  # named, but no op reads it
    return tf.matmul(x, w)


def read_asset(x, w):
    vocab = root / "read-vocab.txt"
    vocab.write_text("a\nb\n")
    asset = tf.constant(str(vocab), name="asset_path")
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(asset, tf.string, 0, tf.int64, 1, delimiter=" "), -1
    )
    return tf.matmul(x, w) + tf.cast(table.lookup(tf.constant(["b"])), tf.float32)


tf1("gpu_pinned", gpu_pinned)
tf1("gpu_pinned_cleared", gpu_pinned, clear_devices=True)
tf1("plain", lambda x, w: tf.matmul(x, w))
tf1("unread_asset", unread_asset)
tf1("read_asset", read_asset, main_op=v1.tables_initializer)
tf1("two_savers", lambda x, w: tf.matmul(x, w), user_saver=True)
tf1("eval_only", lambda x, w: tf.matmul(x, w), tags=("eval",), key="evaluate")


class Module(tf.Module):
    def __init__(self):
        self.w = tf.Variable([[1.0], [2.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def serve(self, x):
        return {"y": tf.matmul(x, self.w)}


module = Module()
tf.saved_model.save(module, str(root / "tf2"), signatures={"serving_default": module.serve})
"""


def _edit(path: Path, change: Any) -> None:
    file = path / "saved_model.pb"
    proto = meta_graph_pb2.SavedModel.FromString(file.read_bytes())
    change(proto.meta_graphs[0])
    file.write_bytes(proto.SerializeToString())


def _add_custom_op(mg: meta_graph_pb2.MetaGraphDef) -> None:
    """What a model built with a custom-op library (TF-DF, tf.text) carries: an op the stock
    release does not register, with its OpDef in the model's stripped_op_list."""
    op = mg.meta_info_def.stripped_op_list.op.add(name="ZooCustomOp")
    op.input_arg.add(name="x", type=1)
    op.output_arg.add(name="y", type=1)
    node = mg.graph_def.node.add(name="custom", op="ZooCustomOp")
    node.input.append("x")


def _add_op_without_kernel(mg: meta_graph_pb2.MetaGraphDef) -> None:
    """A node of BoostedTreesBucketize, which 2.21 registers with no kernel on any device (six
    TF1 estimator exports use it). Added to a written model: TensorFlow cannot write it itself,
    since writing runs the graph, and the session refuses to place the node."""
    from airflow_savedmodel.format import opdefs, tensor_proto

    mg.meta_info_def.stripped_op_list.op.add().CopyFrom(opdefs.registry("2.21")["BoostedTreesBucketize"])
    for name, value in (("values", [0.5, 2.0]), ("boundaries", [0.0, 1.0])):
        const = mg.graph_def.node.add(name=name, op="Const")
        const.attr["dtype"].type = 1
        const.attr["value"].tensor.CopyFrom(tensor_proto.from_numpy(np.array(value, np.float32)))
    node = mg.graph_def.node.add(name="bucketize", op="BoostedTreesBucketize")
    node.input.extend(["values", "boundaries"])
    node.attr["num_features"].i = 1


def _add_orphan_restore(mg: meta_graph_pb2.MetaGraphDef) -> None:
    """A second restore function nothing calls, reading a key the bundle lacks (as two TFX
    Keras-era exports carry): TensorFlow never runs it."""
    restore = next(f for f in mg.graph_def.library.function if "traced_restore" in f.signature.name)
    orphan = mg.graph_def.library.function.add()
    orphan.CopyFrom(restore)
    orphan.signature.name = restore.signature.name + "_orphan"
    by_name = {node.name: node for node in orphan.node_def}
    restore = next(node for node in orphan.node_def if node.op == "RestoreV2")
    names = by_name[restore.input[1].split(":", 1)[0]]  # the tensor_names constant
    names.attr["value"].tensor.string_val[0] = b"_CHECKPOINTABLE_OBJECT_GRAPH_NOT_HERE"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loadability")
    subprocess.run([sys.executable, "-c", WRITER, str(root)], check=True, capture_output=True)
    shutil.copytree(root / "plain", root / "no_kernel")
    _edit(root / "no_kernel", _add_op_without_kernel)
    shutil.copytree(root / "plain", root / "custom_op")
    _edit(root / "custom_op", _add_custom_op)
    shutil.copytree(root / "tf2", root / "orphan_restore")
    _edit(root / "orphan_restore", _add_orphan_restore)
    for name in ("unread_asset", "read_asset"):
        for asset in (root / name / "assets").iterdir():
            asset.unlink()
    names = [
        "no_kernel",
        "gpu_pinned",
        "gpu_pinned_cleared",
        "custom_op",
        "orphan_restore",
        "unread_asset",
        "read_asset",
        "plain",
        "tf2",
        "two_savers",
    ]
    return {name: root / name for name in [*names, "eval_only"]}


def _feeds(path: Path) -> dict[str, Any]:
    """A probe request for the serving signature: zeros of each input's dtype and shape (1 for
    unknown dimensions; serialized empty tf.Examples for string inputs)."""
    from airflow_savedmodel.format import dtypes

    with SavedModel.open(str(path)) as model:
        sig = model.meta_graph("serve").signatures["serving_default"]
        feeds = {}
        for key, spec in sig.inputs.items():
            shape = [1] if spec.shape is None else [1 if d is None or d < 0 else d for d in spec.shape]
            np_dtype = dtypes.to_numpy(types_pb2.DataType.Value(spec.dtype))
            feeds[key] = np.full(shape, b"", object) if np_dtype is None else np.zeros(shape, np_dtype)
        return feeds


def tensorflow_serves(path: Path) -> tuple[bool, str]:
    """TF Serving's path: TensorFlow's TF1 session loader, then one serving_default request."""
    from interop import tf_oracle

    try:
        tf_oracle.run_tf1(path, ["serve"], "serving_default", _feeds(path))
    except Exception as exc:  # TensorFlow's own refusal (its whole message), compared below
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def _short(why: str) -> str:
    """The line of TensorFlow's message that names the cause, for the table."""
    lines = [line.strip() for line in why.splitlines() if line.strip()]
    causes = ("No OpKernel", "Cannot assign a device", "Op type not registered", "No such file", "not found")
    found = (line for cause in causes for line in lines if cause in line)
    cause = next(found, lines[0] if lines else "")
    return cause.replace("|", "/")[:140]


def tensorflow2_loads(path: Path) -> tuple[bool, str]:
    import tensorflow as tf

    try:
        tf.saved_model.load(str(path), tags=["serve"])
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


EXPECTED = {
    "no_kernel": (["op-no-kernel"], "No OpKernel was registered to support Op 'BoostedTreesBucketize'"),
    "gpu_pinned": (["device-pinned-accelerator"], "/device:GPU:0"),
    "gpu_pinned_cleared": ([], ""),
    "custom_op": (["op-unknown-in-target"], "Op type not registered 'ZooCustomOp'"),
    "orphan_restore": ([], ""),
    "unread_asset": ([], ""),
    "read_asset": (["asset-missing"], "read-vocab.txt"),
    "plain": ([], ""),
    "tf2": ([], ""),
    "two_savers": ([], ""),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_reason_is_what_tensorflow_says(matrix: dict[str, Path], name: str) -> None:
    codes, tf_says = EXPECTED[name]
    report = validate(str(matrix[name]), op_policy="off")
    errors = [f.code for f in report.findings if f.severity == "error"]
    assert errors == codes, report.to_text()
    serves, why = tensorflow_serves(matrix[name])
    assert serves == (not codes), why
    assert tf_says in why


def test_a_second_saver_nothing_runs_is_not_refused(matrix: dict[str, Path]) -> None:
    """A TF1 graph with the user's own tf.train.Saver (training/checkpoints/) beside the
    builder's (save/): its SaveV2 and RestoreV2 nodes are placed but nothing the loader or a
    request runs reaches them. TensorFlow serves the model, and the default op policy passes it."""
    with SavedModel.open(str(matrix["two_savers"])) as model:
        graph = model.meta_graph("serve").proto.graph_def
        ops = {n.name: n.op for n in graph.node if n.name.startswith("training/checkpoints/")}
    assert {"SaveV2", "RestoreV2"} <= set(ops.values()), "TensorFlow wrote the second saver's ops"
    report = validate(str(matrix["two_savers"]))
    assert report.valid and not report.findings, report.to_text()
    assert tensorflow_serves(matrix["two_savers"]) == (True, "")


def test_an_eval_only_export_needs_no_serving_signature(matrix: dict[str, Path]) -> None:
    """The only meta graph is tagged eval, its signature is "evaluate": TensorFlow loads it
    with those tags and runs it, so validate with that tag set and no signature named passes
    (serving_default is required of a serve graph by default, not of others). A signature the
    caller names is still required."""
    from interop import tf_oracle

    path = matrix["eval_only"]
    assert validate(str(path), tags="eval").valid, validate(str(path), tags="eval").to_text()
    out = tf_oracle.run_tf1(path, ["eval"], "evaluate", {"x": np.ones((1, 2), np.float32)})
    assert out["y"].tolist() == [[3.0]]
    done = subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", "validate", str(path), "--tag-set", "eval"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("VALID"), done.stdout + done.stderr
    named = validate(str(path), tags="eval", required_signatures=["serving_default"])
    assert [f.code for f in named.findings] == ["required-signature-missing"], named.to_text()
    assert [f.code for f in validate(str(path)).findings] == ["tag-set-missing"]


def test_warnings_tell_what_tensorflow_tolerates(matrix: dict[str, Path]) -> None:
    report = validate(str(matrix["unread_asset"]), op_policy="off")
    assert report.valid and report.codes() == ["asset-missing-unread"], report.to_text()
    assert "no op reads it" in report.findings[0].message


def test_clear_devices_is_the_fix_validate_names(matrix: dict[str, Path], tmp_path: Path) -> None:
    from airflow_savedmodel.format import transforms

    report = validate(str(matrix["gpu_pinned"]), op_policy="off")
    assert [f.fix for f in report.findings] == ["clear_devices"]
    transforms.clear_devices(str(matrix["gpu_pinned"]), str(tmp_path / "cleared"))
    assert validate(str(tmp_path / "cleared"), op_policy="off").valid
    assert tensorflow_serves(tmp_path / "cleared") == (True, "")


def test_release_range(matrix: dict[str, Path]) -> None:
    """The kernel BoostedTreesBucketize lost and the GPU pin, release by release and device by device."""
    report = validate(str(matrix["gpu_pinned"]), op_policy="off", releases=True)
    assert report.serves_on("cpu") == "none"
    assert report.serves_on("gpu") == "2.16-2.21"
    assert report.releases is not None
    assert report.releases["2.21"]["cpu"] == ["nodes pinned to /device:GPU:0"]
    # Written by TF 2.21's TF1 builder without stripping: MatMul.grad_a/grad_b (2.16's) carry
    # their defaults, and VarHandleOp.debug_name (2.15's) a real value.
    plain = validate(str(matrix["plain"]), op_policy="off", releases=True)
    assert plain.to_json()["releases"]["serves_on"] == {"cpu": "2.16-2.21", "gpu": "2.16-2.21"}
    assert plain.releases is not None
    assert plain.releases["2.15"]["cpu"] == [
        "attr MatMul.grad_a unknown (strip fixes it)",
        "attr MatMul.grad_b unknown (strip fixes it)",
    ]
    assert "attr VarHandleOp.debug_name unknown" in plain.releases["2.14"]["gpu"]
    assert "serves on: CPU 2.16-2.21; GPU 2.16-2.21" in plain.to_text()
    required = validate(str(matrix["no_kernel"]), op_policy="off", require_releases="2.12+")
    unmet = [f for f in required.findings if f.code == "release-range-unmet"]
    assert len(unmet) == 1 and "no CPU kernel for BoostedTreesBucketize" in unmet[0].message


def test_every_tensorflow_written_model_gets_tensorflows_verdict(
    matrix: dict[str, Path], zoo: dict[str, Path]
) -> None:
    rows = []
    for name, path in [*sorted(zoo.items()), *matrix.items()]:
        with SavedModel.open(str(path)) as model:
            serve = next((mg for mg in model.meta_graphs if mg.tag_set == {"serve"}), None)
            if serve is None or "serving_default" not in serve.signatures:
                continue  # judged by TF Serving's path only (eval_only has its own test)
        report = validate(str(path), op_policy="off")
        serves, why = tensorflow_serves(path)
        loads2, why2 = tensorflow2_loads(path)
        here = str(path.parent) + "/"  # the table names files inside the model, not this run's tmp
        rows.append((name, report, serves, why.replace(here, ""), loads2, why2.replace(here, "")))
    lines = [
        "| model | validate (2.21, CPU) | TF1 session loader + one request | tf.saved_model.load | agree |",
        "|---|---|---|---|---|",
    ]
    for name, report, serves, why, loads2, why2 in rows:
        verdict = (
            "valid"
            if report.valid
            else "invalid: " + ", ".join(sorted({f.code for f in report.findings if f.severity == "error"}))
        )
        lines.append(
            f"| {name} | {verdict} | {'serves' if serves else _short(why)} | {'loads' if loads2 else _short(why2)} "
            f"| {'yes' if report.valid == serves else '**NO**'} |"
        )
    agreed = sum(report.valid == serves for _, report, serves, *_ in rows)
    lines.append(f"\n{agreed} of {len(rows)} models: validate's verdict is TensorFlow's.")
    out = ROOT / "test-artifacts" / "loadability.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    assert agreed == len(rows), "\n".join(lines)
    assert len(rows) >= 15


def test_add_fills_in_the_target_releases_defaults(matrix: dict[str, Path], tmp_path: Path) -> None:
    """--add takes defaults from the release that loads the model (TensorFlow's importer does),
    not from the producer's stripped_op_list: an attr the producer's OpDef lacks is added too."""
    from airflow_savedmodel.format import opdefs, transforms

    src = tmp_path / "src"
    shutil.copytree(matrix["plain"], src)

    def forget(mg: meta_graph_pb2.MetaGraphDef) -> None:
        for op in mg.meta_info_def.stripped_op_list.op:
            if op.name == "MatMul":
                kept = [a for a in op.attr if a.name != "grad_a"]
                del op.attr[:]
                op.attr.extend(kept)
        for node in mg.graph_def.node:
            if node.op == "MatMul":
                node.attr.pop("grad_a", None)

    _edit(src, forget)
    transforms.add_default_attrs(str(src), str(tmp_path / "added"), release="2.21")
    proto = meta_graph_pb2.SavedModel.FromString((tmp_path / "added" / "saved_model.pb").read_bytes())
    matmul = next(n for n in proto.meta_graphs[0].graph_def.node if n.op == "MatMul")
    assert "grad_a" in matmul.attr
    assert any(a.name == "grad_a" for a in opdefs.registry("2.21")["MatMul"].attr)
    assert isinstance(matmul, graph_pb2.NodeDef)
    assert tensorflow_serves(tmp_path / "added") == (True, "")
