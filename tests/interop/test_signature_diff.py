"""savedmodel diff against TensorFlow: pairs of models TensorFlow writes, each differing in one
way, classified as breaking or compatible; and the classification checked by running today's
client (REST-style: JSON values converted to the signature's dtypes, outputs read by key and
dtype) against the new model in TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format import compat
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.validate import validate

pytestmark = [pytest.mark.interop, pytest.mark.tf]


def save(path: Path, signatures: dict[str, tuple[dict[str, tuple[Any, list[int | None]]], Any]]) -> Path:
    """A tf.Module whose signatures take the given inputs (name -> (dtype, shape)) and return
    ``outputs(inputs)`` (a dict of tensors)."""
    import tensorflow as tf

    module = tf.Module()
    functions = {}
    for key, (inputs, outputs) in signatures.items():
        specs = [tf.TensorSpec(shape, dtype, name=name) for name, (dtype, shape) in inputs.items()]
        names = list(inputs)

        def call(*args: Any, names: list[str] = names, outputs: Any = outputs) -> Any:
            return outputs(dict(zip(names, args, strict=True)))

        functions[key] = tf.function(call, input_signature=specs).get_concrete_function()
    tf.saved_model.save(module, str(path), signatures=functions)
    return path


def base_outputs(inputs: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    x = next(iter(inputs.values()))
    return {"y": tf.reduce_sum(tf.cast(x, tf.float32), axis=-1)}


def with_z(inputs: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    return {**base_outputs(inputs), "z": tf.constant(1.0)}


def extra_signature() -> dict[str, Any]:
    import tensorflow as tf

    return {"score": ({"x": (tf.float32, [None, 3])}, base_outputs)}


CASES: dict[str, tuple[Any, list[tuple[str, bool]]]] = {
    "renamed input": (
        lambda tf: {"serving_default": ({"features": (tf.float32, [None, 3])}, base_outputs)},
        [("input-added", True), ("input-removed", True)],
    ),
    "added output": (
        lambda tf: {"serving_default": ({"x": (tf.float32, [None, 3])}, with_z)},
        [("output-added", False)],
    ),
    "changed dtype": (
        lambda tf: {"serving_default": ({"x": (tf.int32, [None, 3])}, base_outputs)},
        [("input-dtype", True)],
    ),
    "widened dtype": (
        lambda tf: {"serving_default": ({"x": (tf.float64, [None, 3])}, base_outputs)},
        [("input-dtype", False)],
    ),
    "changed rank": (
        lambda tf: {"serving_default": ({"x": (tf.float32, [None, 3, 1])}, base_outputs)},
        [("input-shape", True), ("output-shape", True)],
    ),
    "new signature": (
        lambda tf: {
            "serving_default": ({"x": (tf.float32, [None, 3])}, base_outputs),
            "explain": ({"x": (tf.float32, [None, 3])}, with_z),
            **extra_signature(),
        },
        [("signature-added", False)],
    ),
    "removed signature": (
        lambda tf: {"score": ({"x": (tf.float32, [None, 3])}, base_outputs)},
        [("signature-removed", True)],
    ),
}


def client_works(model_dir: Path) -> bool:
    """Today's client, REST-style: {"x": [[0.5, 1.5, 2.5]]} to serving_default, reading a float
    'y' of rank 1; run as TF Serving runs it, with TensorFlow's TF1 session loader (which checks
    the fed shape against the signature's)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    try:
        with graph.as_default(), v1.Session(graph=graph) as sess:
            meta = v1.saved_model.loader.load(sess, ["serve"], str(model_dir))
            signature = meta.signature_def["serving_default"]
            x = signature.inputs["x"]
            dtype = tf.dtypes.as_dtype(x.dtype)
            if dtype.is_integer:
                return False  # TF Serving's REST parser refuses 0.5 for an integer input
            y = signature.outputs["y"]
            value = sess.run(y.name, {x.name: np.asarray([[0.5, 1.5, 2.5]], dtype.as_numpy_dtype)})
            return tf.dtypes.as_dtype(y.dtype) == tf.float32 and value.ndim == 1
    except (KeyError, TypeError, ValueError, tf.errors.InvalidArgumentError):
        return False


@pytest.fixture(scope="module")
def old_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tensorflow as tf

    path = tmp_path_factory.mktemp("old") / "model"
    save(path, {"serving_default": ({"x": (tf.float32, [None, 3])}, base_outputs), **extra_signature()})
    assert client_works(path)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_change_is_classified_as_tensorflow_shows(old_model: Path, tmp_path: Path, case: str) -> None:
    import tensorflow as tf

    build, expected = CASES[case]
    signatures = build(tf)
    if case not in ("new signature", "removed signature"):
        signatures = {**signatures, **extra_signature()}
    new = save(tmp_path / "new", signatures)
    with SavedModel.open(str(old_model)) as before, SavedModel.open(str(new)) as after:
        changes = compat.diff(before.meta_graph("serve").signatures, after.meta_graph("serve").signatures)
    assert sorted((c.what, c.breaking) for c in changes) == sorted(expected), [c.text() for c in changes]
    breaks = any(c.breaking for c in changes)
    if case != "removed signature":  # (that one breaks clients of 'serving_default' itself)
        assert client_works(new) is (not breaks), case
    report = validate(str(new), compatible_with=str(old_model), required_signatures=())
    assert report.valid is (not breaks)
    assert [f.code for f in report.findings if f.severity == "error"] == ["signature-breaking-change"] * len(
        compat.breaking(changes)
    )


def test_the_diff_command_names_each_difference(
    old_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tensorflow as tf

    from airflow_savedmodel.cli import main

    new = save(tmp_path / "new", {"serving_default": ({"features": (tf.float32, [None, 3])}, with_z)})
    assert main(["diff", str(old_model), str(new)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{old_model} -> {new}"
    assert out[1:] == [
        "  BREAKING: signature 'score' removed",
        "  BREAKING: input 'features' of 'serving_default' added",
        "  BREAKING: input 'x' of 'serving_default' removed",
        "  compatible: output 'z' of 'serving_default' added",
        "3 breaking, 1 compatible",
    ]
    assert main(["diff", str(old_model), str(old_model), "--json"]) == 0
    assert '"breaking": false' in capsys.readouterr().out
