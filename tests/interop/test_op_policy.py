"""The op policy scan on models TensorFlow writes: each flagged family found where TF put it (the
graph or a function), the models' own checkpoint ops never flagged, policies that lower or allow
a family, and the export operator's refusal. Network and debug ops are not something a model
gets from tf.saved_model.save, so those families are checked on graphs edited by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format import op_policy
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.protos import meta_graph_pb2

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

WRITER = r"""
import sys
import tensorflow as tf

root = sys.argv[1]

class Reads(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(self, path):
        return {"y": tf.io.read_file(path)}

class Writes(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(self, text):
        tf.io.write_file("/tmp/written-by-a-model", text)
        return {"y": text}

class Python(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": tf.py_function(lambda v: v * 2, [x], tf.float32)}

class PrintsToFile(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        tf.print(x, output_stream="file:///tmp/printed-by-a-model")
        return {"y": x}

class PrintsToStderr(tf.Module):
    def __init__(self):
        self.w = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        tf.print(x)
        return {"y": x * self.w}

class Unreached(tf.Module):
    # A function that reads files, saved in the library for tf.saved_model.load's callers, but
    # which no node of the graph, no signature and no saver calls: TF Serving never runs it.

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def load_vocabulary(self, path):
        return tf.io.read_file(path)

for name, cls in [("reads", Reads), ("writes", Writes), ("python", Python),
                  ("prints_to_file", PrintsToFile), ("clean", PrintsToStderr), ("unreached", Unreached)]:
    module = cls()
    tf.saved_model.save(module, f"{root}/{name}", signatures={"serving_default": module.serve})
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("op-policy")
    done = subprocess.run([sys.executable, "-c", WRITER, str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def findings(report) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(f.severity, f.code, f.message.split(":", 1)[0]) for f in report.findings]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reads", [("error", "op-reads-files", "ReadFile reads files named by the graph or its inputs")]),
        ("writes", [("error", "op-writes-files", "WriteFile writes files")]),
        (
            "python",
            [
                (
                    "error",
                    "op-runs-python",
                    "EagerPyFunc calls back into Python (TensorFlow Serving has no Python to call)",
                )
            ],
        ),
        ("prints_to_file", [("error", "op-writes-files", "PrintV2 writes files")]),
        ("clean", []),  # PrintV2 to stderr, and the model's own SaveV2/RestoreV2 in its saver functions
        ("unreached", []),  # ReadFile in a library function nothing that can run calls
    ],
)
def test_each_family_is_found_in_models_tensorflow_wrote(
    models: Path, name: str, expected: list[tuple[str, str, str]]
) -> None:
    report = validate(str(models / name), required_signatures=())
    assert "op policy" in report.checks
    assert [f for f in findings(report) if f[1].startswith("op-")] == expected
    if expected:  # named where TF put it: inside the serving function
        (finding,) = [f for f in report.findings if f.code.startswith("op-")]
        assert "__inference_serve_" in finding.message


def test_policies_lower_allow_or_switch_off_the_scan(models: Path) -> None:
    lowered = validate(str(models / "reads"), required_signatures=(), op_policy={"warning": ["file-read"]})
    assert lowered.valid and findings(lowered)[0][:2] == ("warning", "op-reads-files")
    allowed = validate(str(models / "python"), required_signatures=(), op_policy={"allow": ["EagerPyFunc"]})
    assert allowed.valid and not [f for f in allowed.findings if f.code.startswith("op-")]
    off = validate(str(models / "writes"), required_signatures=(), op_policy="off")
    assert off.valid and "op policy" not in off.checks
    with pytest.raises(FormatError) as caught:
        validate(str(models / "writes"), op_policy={"forbid": ["python"]})
    assert caught.value.problem == "op policy: 'forbid' is not one of error, warning, allow"


def test_network_and_debug_ops_and_restores_outside_the_saver(models: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "edited"
    shutil.copytree(models / "clean", model)
    proto = meta_graph_pb2.SavedModel()
    proto.ParseFromString((model / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    graph.node.add(name="call_home", op="RpcCall")
    graph.node.add(name="tap", op="DebugIdentityV2")
    graph.node.add(name="sneaky_restore", op="RestoreV2")  # not the saver's, and a request runs it:
    served = proto.meta_graphs[0].signature_def["serving_default"].outputs["y"].name.split(":")[0]
    next(n for n in graph.node if n.name == served).input.append("^sneaky_restore")
    (model / "saved_model.pb").write_bytes(proto.SerializeToString())
    uses = op_policy.scan(proto.meta_graphs[0])
    assert [(u.family, u.op, u.nodes) for u in uses] == [
        ("debug", "DebugIdentityV2", ("tap",)),
        ("file-read", "RestoreV2", ("sneaky_restore",)),
        ("network", "RpcCall", ("call_home",)),
    ]
    report = validate(str(model), required_signatures=())
    assert sorted(f.code for f in report.findings) == [
        "op-debug-output",
        "op-reaches-network",
        "op-reads-files",
    ]


def savedmodel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_savedmodel", *args], capture_output=True, text=True)


def test_the_cli_refuses_a_model_that_breaks_the_policy_and_reads_a_policy_file(
    models: Path, tmp_path: Path
) -> None:
    done = savedmodel("validate", str(models / "python"), "--required-signature", "serving_default")
    assert done.returncode == 1 and "ERROR   op-runs-python" in done.stdout
    policy = tmp_path / "policy.json"
    policy.write_text('{"allow": ["python"]}')
    done = savedmodel("validate", str(models / "python"), "--op-policy", str(policy))
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_what_can_run_is_judged_and_the_saver_is_found_by_reachability(models: Path) -> None:
    """The library of the "unreached" model holds a function with ReadFile that no node calls:
    not flagged (TF Serving never runs it). A SaveV2 whose scope looks like a saver's
    (``save_1/``, reading ``save_1/Const``) that no saver_def reaches but a request runs is
    flagged (a saver's name is no exemption); the same SaveV2 that nothing run at load or
    request time reaches is not (it never executes); the model's own saver ops are not."""
    proto = meta_graph_pb2.SavedModel()
    proto.ParseFromString((models / "unreached" / "saved_model.pb").read_bytes())
    mg = proto.meta_graphs[0]
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    holders = [name for name, f in library.items() if any(n.op == "ReadFile" for n in f.node_def)]
    assert holders, "TensorFlow kept the function in the library"
    assert op_policy.scan(mg) == []
    graph = mg.graph_def
    graph.node.add(name="save_1/Const", op="Const")
    spoof = graph.node.add(name="save_1/SaveV2", op="SaveV2")
    spoof.input.append("save_1/Const")
    assert op_policy.scan(mg) == [], "an unreachable save op never runs"
    served = mg.signature_def["serving_default"].outputs["y"].name.split(":")[0]
    next(n for n in graph.node if n.name == served).input.append("^save_1/SaveV2")
    caller = graph.node.add(name="calls_the_reader", op="StatefulPartitionedCall")
    caller.attr["f"].func.name = holders[0]
    uses = {(u.op, u.nodes) for u in op_policy.scan(mg)}
    assert ("SaveV2", ("save_1/SaveV2",)) in uses, uses  # a saver's name is no exemption
    assert (
        "ReadFile",
        tuple(f"{holders[0]}/{n.name}" for n in library[holders[0]].node_def if n.op == "ReadFile"),
    ) in uses
    saver_ops = {n.name for n in graph.node if n.op in ("SaveV2", "RestoreV2", "MergeV2Checkpoints")}
    own = op_policy.saver_nodes(mg) & saver_ops
    assert all(name not in own for _, nodes in uses for name in nodes)
