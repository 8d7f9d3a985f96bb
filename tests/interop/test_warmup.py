"""Warmup requests: what the project writes, TensorFlow reads (tf.data.TFRecordDataset) and
tensorflow_serving's own PredictionLog parses; replayed through the signature with TensorFlow
they give the outputs of feeding the inputs directly. Broken warmup files each get their code."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.errors import InputMismatchError
from airflow_savedmodel.format import warmup
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.protos import prediction_log_pb2

pytestmark = pytest.mark.interop


def tf_records(path: Path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def their_log(data: bytes) -> Any:
    from tensorflow_serving.apis import prediction_log_pb2 as theirs

    return theirs.PredictionLog.FromString(data)


def write(model_dir: Path, signature_key: str, inputs: dict[str, np.ndarray], count: int = 1) -> Path:
    with SavedModel.open(str(model_dir)) as model:
        data = warmup.requests(model.meta_graph("serve").signature(signature_key), inputs, count=count)
    target = model_dir / warmup.WARMUP_FILE
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    return target


@pytest.mark.parametrize(("name", "key", "feed"), [("tf2_module", "x", 3), ("keras_export", "features", 4)])
def test_predict_requests_replay_in_tensorflow_like_the_inputs_fed_directly(
    model_copy: Any, name: str, key: str, feed: int
) -> None:
    import tensorflow as tf

    from interop import tf_oracle

    model_dir = model_copy(name)
    x = np.random.default_rng(4).normal(size=(5, feed)).astype(np.float32)
    path = write(model_dir, "serving_default", {key: x}, count=3)
    records = tf_records(path)
    assert len(records) == 3
    direct = tf_oracle.run_tf2(model_dir, "serving_default", {key: x})
    for record in records:
        log = their_log(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        fed = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        replayed = tf_oracle.run_tf2(model_dir, "serving_default", fed)
        for out in direct:
            np.testing.assert_array_equal(replayed[out], direct[out])
    report = validate(str(model_dir))
    assert report.valid and "warmup requests" in report.checks, report.to_text()


def test_classify_requests_carry_examples_the_signature_parses(tmp_path: Path) -> None:
    import tensorflow as tf

    from interop import tf_oracle

    rng = np.random.default_rng(2)
    layer = DenseLayer(rng.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    model_dir = Path(
        export_dense_model(str(tmp_path / "m"), [layer], classify=True, class_labels=["a", "b", "c"])
    )
    x = rng.normal(size=(6, 4)).astype(np.float32)
    path = write(model_dir, "classify", {"x": x})
    (record,) = tf_records(path)
    log = their_log(record)
    examples = log.classify_log.request.input.example_list.examples
    assert len(examples) == 6 and list(examples[0].features.feature["x"].float_list.value) == pytest.approx(
        x[0]
    )
    serialized = [e.SerializeToString() for e in examples]
    classified = tf_oracle.run_tf1(model_dir, ["serve"], "classify", {"inputs": serialized})
    predicted = tf_oracle.run_tf1(model_dir, ["serve"], "serving_default", {"x": x})
    np.testing.assert_allclose(classified["scores"], predicted["y"], atol=1e-6)
    assert tf.train.Example.FromString(serialized[0]).features.feature["x"].float_list.value
    assert validate(str(model_dir)).valid


def test_inputs_are_checked_against_the_signature_before_anything_is_written(model_copy: Any) -> None:
    model_dir = model_copy("tf2_module")
    with SavedModel.open(str(model_dir)) as model:
        signature = model.meta_graph("serve").signature("serving_default")
        with pytest.raises(InputMismatchError, match=r"input 'x' is DT_DOUBLE; the signature takes DT_FLOAT"):
            warmup.requests(signature, {"x": np.zeros((2, 3))})
        with pytest.raises(
            InputMismatchError, match=r"input 'x' has shape \[2, 4\]; the signature takes \(-1, 3\)"
        ):
            warmup.requests(signature, {"x": np.zeros((2, 4), np.float32)})
        with pytest.raises(InputMismatchError, match=r"unknown \['y'\]; missing \['x'\]"):
            warmup.requests(signature, {"y": np.zeros((2, 3), np.float32)})
        with pytest.raises(InputMismatchError, match="count must be between 1 and 1000"):
            warmup.requests(signature, {"x": np.zeros((2, 3), np.float32)}, count=1001)
    assert not (model_dir / "assets.extra").exists()


def _good_record(model_dir: Path) -> bytes:
    with SavedModel.open(str(model_dir)) as model:
        signature = model.meta_graph("serve").signature("serving_default")
        return warmup.requests(signature, {"x": np.ones((1, 3), np.float32)})


def _log_record(mutate: Any) -> bytes:
    log = prediction_log_pb2.PredictionLog()
    mutate(log)
    return warmup.frame(log.SerializeToString())


def _predict(signature: str = "serving_default", **inputs: np.ndarray) -> Any:
    from airflow_savedmodel.format import tensor_proto

    def mutate(log: prediction_log_pb2.PredictionLog) -> None:
        log.predict_log.request.model_spec.signature_name = signature
        for key, value in inputs.items():
            log.predict_log.request.inputs[key].CopyFrom(tensor_proto.from_numpy(value))

    return mutate


BROKEN: dict[str, Any] = {
    "warmup-corrupt": lambda good: good[:-1] + bytes([good[-1] ^ 1]),  # the data's crc
    "warmup-corrupt-length": lambda good: good[:8] + bytes([good[8] ^ 1]) + good[9:],
    "warmup-corrupt-truncated": lambda good: good[:-6],
    "warmup-too-many-records": lambda good: good * 1001,
    "warmup-record-unparseable": lambda good: warmup.frame(b"\xff\xff\xff"),
    "warmup-log-type-unsupported": lambda good: _log_record(
        lambda log: log.session_run_log.request.model_spec.SetInParent()
    ),
    "warmup-signature-missing": lambda good: _log_record(
        _predict("predict_v2", x=np.ones((1, 3), np.float32))
    ),
    "warmup-method-mismatch": lambda good: _log_record(
        lambda log: log.classify_log.request.model_spec.SetInParent()
    ),
    "warmup-input-mismatch": lambda good: _log_record(_predict(features=np.ones((1, 3), np.float32))),
    "warmup-dtype-mismatch": lambda good: _log_record(_predict(x=np.ones((1, 3), np.int32))),
    "warmup-shape-mismatch": lambda good: _log_record(_predict(x=np.ones((1, 3, 1), np.float32))),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_warmup_file_gets_its_own_code(model_copy: Any, case: str) -> None:
    model_dir = model_copy("tf2_module")
    good = _good_record(model_dir)
    assert tf_records_of(good) == 1
    target = model_dir / warmup.WARMUP_FILE
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(BROKEN[case](good))
    report = validate(str(model_dir))
    code = case.split("-corrupt", maxsplit=1)[0] + "-corrupt" if "-corrupt" in case else case
    assert not report.valid
    assert {f.code for f in report.findings if f.severity == "error"} == {code}, report.to_text()
    (finding,) = [f for f in report.findings if f.code == code]
    assert finding.file == str(target)
    assert finding.message.startswith("record " if code != "warmup-too-many-records" else "more than 1000")


def tf_records_of(data: bytes) -> int:
    return sum(1 for _ in warmup.records(io.BytesIO(data), len(data)))


def test_a_huge_declared_length_is_not_allocated() -> None:
    length = struct.pack("<Q", 1 << 62)
    from airflow_savedmodel.format.crc import crc32c, mask

    data = length + struct.pack("<I", mask(crc32c(length))) + b"x" * 16
    ((index, problem),) = list(warmup.records(io.BytesIO(data), len(data)))
    assert index == 0 and problem == f"truncated record at byte 0: {1 << 62} bytes declared, 12 left"


def test_a_warmup_file_tensorflow_writes_is_read_the_same_and_validates(model_copy: Any) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2 as theirs

    model_dir = model_copy("tf2_module")
    target = model_dir / warmup.WARMUP_FILE
    target.parent.mkdir(exist_ok=True)
    written = []
    with tf.io.TFRecordWriter(str(target)) as writer:
        for n in (1, 2, 7):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name="m", signature_name="serving_default"),
                inputs={"x": tf.make_tensor_proto(np.ones((n, 3), np.float32))},
            )
            data = theirs.PredictionLog(predict_log=theirs.PredictLog(request=request)).SerializeToString()
            writer.write(data)
            written.append(data)
    raw = target.read_bytes()
    assert [d for _, d in warmup.records(io.BytesIO(raw), len(raw))] == written
    report = validate(str(model_dir))
    assert report.valid and "warmup requests" in report.checks, report.to_text()
