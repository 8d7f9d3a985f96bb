"""Our protos are current with protos/, wire-compatible with TensorFlow's, and load beside them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _fields(descriptor: Any, prefix: str, out: dict[str, Any]) -> None:
    name = descriptor.full_name.split(".", 1 if prefix == "tensorflow" else 2)[-1]
    fields = {}
    for f in descriptor.fields:
        target = f.message_type or f.enum_type
        type_name = target.full_name.rsplit(".", 1)[-1] if target else None
        fields[f.number] = (f.name, f.type, f.is_repeated, f.is_packed, type_name)
    out[name] = fields
    for nested in descriptor.nested_types:
        _fields(nested, prefix, out)


def _enums(descriptor: Any, out: dict[str, Any]) -> None:
    for enum in descriptor.enum_types_by_name.values() if hasattr(descriptor, "enum_types_by_name") else ():
        out[enum.name] = {v.number: v.name for v in enum.values}


@pytest.mark.interop
@pytest.mark.tf
def test_wire_compatible_with_tensorflow() -> None:
    """Every message TensorFlow defines for these files has the same fields, numbers, types and labels here."""
    from tensorflow.core.framework import kernel_def_pb2 as tf_kernel_def
    from tensorflow.core.framework import variable_pb2 as tf_variable
    from tensorflow.core.protobuf import fingerprint_pb2 as tf_fingerprint
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model
    from tensorflow.core.protobuf import tensor_bundle_pb2 as tf_bundle

    from airflow_savedmodel.protos import (
        fingerprint_pb2,
        kernel_def_pb2,
        meta_graph_pb2,
        tensor_bundle_pb2,
        variable_pb2,
    )

    def collect(roots: list[Any], package: str) -> tuple[dict[str, Any], dict[str, Any]]:
        messages: dict[str, Any] = {}
        enums: dict[str, Any] = {}
        seen: set[str] = set()

        def walk(fd: Any) -> None:
            if fd.name in seen:
                return
            seen.add(fd.name)
            for dep in fd.dependencies:
                walk(dep)
            if fd.package != package:
                return
            for message in fd.message_types_by_name.values():
                _fields(message, package, messages)
                for enum in message.enum_types:
                    enums[enum.full_name.split(".", 1 if package == "tensorflow" else 2)[-1]] = {
                        v.number: v.name for v in enum.values
                    }
            for enum in fd.enum_types_by_name.values():
                enums[enum.name] = {v.number: v.name for v in enum.values}

        for root in roots:
            walk(root.DESCRIPTOR)
        return messages, enums

    theirs, their_enums = collect(
        [tf_saved_model, tf_fingerprint, tf_bundle, tf_variable, tf_kernel_def], "tensorflow"
    )
    ours, our_enums = collect(
        [meta_graph_pb2, fingerprint_pb2, tensor_bundle_pb2, variable_pb2, kernel_def_pb2],
        "airflow_savedmodel.tf",
    )
    assert len(theirs) > 80
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"messages TensorFlow has and we lack: {missing}"
    for name, fields in theirs.items():
        assert ours[name] == fields, name
    for name, values in their_enums.items():
        assert our_enums.get(name) == values, name


@pytest.mark.interop
def test_tensorflow_parses_what_we_serialize_and_vice_versa(zoo: dict[str, Path]) -> None:
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model

    from airflow_savedmodel.protos import meta_graph_pb2

    for path in zoo.values():
        pb = path / "saved_model.pb"
        if not pb.exists():
            continue
        data = pb.read_bytes()
        ours = meta_graph_pb2.SavedModel.FromString(data)
        theirs = tf_saved_model.SavedModel.FromString(ours.SerializeToString())
        assert theirs == tf_saved_model.SavedModel.FromString(data)
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


@pytest.mark.tf
def test_our_protos_and_tensorflows_load_in_one_process() -> None:
    code = (
        "import airflow_savedmodel.protos.meta_graph_pb2 as ours\n"
        "import airflow_savedmodel.protos.fingerprint_pb2, airflow_savedmodel.protos.tensor_bundle_pb2\n"
        "from tensorflow.core.protobuf import saved_model_pb2, meta_graph_pb2, fingerprint_pb2, tensor_bundle_pb2\n"
        "import airflow_savedmodel.format.model\n"
        "assert ours.SavedModel.DESCRIPTOR.full_name == 'airflow_savedmodel.tf.SavedModel'\n"
        "assert saved_model_pb2.SavedModel.DESCRIPTOR.full_name == 'tensorflow.SavedModel'\n"
        "print('ok')\n"
    )
    for order in (code, "import tensorflow\n" + code):
        result = subprocess.run(
            [sys.executable, "-c", order], capture_output=True, text=True, env=_quiet_env()
        )
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def _quiet_env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.interop
@pytest.mark.tf
def test_warmup_protos_are_wire_compatible_with_tensorflow_serving() -> None:
    """Every field we declare for TF Serving's request logs and tf.Example has TF Serving's (and
    TensorFlow's) number, type and label; we may leave fields out, never change one."""
    from tensorflow.core.example import example_pb2 as tf_example
    from tensorflow_serving.apis import prediction_log_pb2 as tfs_log

    from airflow_savedmodel.protos import example_pb2, prediction_log_pb2

    def fields(descriptor: Any, seen: dict[str, dict[str, tuple[int, int, bool]]]) -> None:
        name = (
            descriptor.name
            if not descriptor.containing_type
            else f"{descriptor.containing_type.name}.{descriptor.name}"
        )
        if name in seen:
            return
        seen[name] = {f.name: (f.number, f.type, f.is_repeated) for f in descriptor.fields}
        for f in descriptor.fields:
            if (
                f.message_type is not None
                and not f.message_type.full_name.startswith(("google.", "tensorflow.Tensor"))
                and not f.message_type.full_name.startswith("airflow_savedmodel.tf.Tensor")
            ):
                fields(f.message_type, seen)

    ours: dict[str, dict[str, tuple[int, int, bool]]] = {}
    theirs: dict[str, dict[str, tuple[int, int, bool]]] = {}
    fields(prediction_log_pb2.PredictionLog.DESCRIPTOR, ours)
    fields(example_pb2.Example.DESCRIPTOR, ours)
    fields(tfs_log.PredictionLog.DESCRIPTOR, theirs)
    fields(tf_example.Example.DESCRIPTOR, theirs)
    assert len(ours) > 25
    for message, declared in ours.items():
        assert message in theirs, message
        for field, spec in declared.items():
            assert theirs[message].get(field) == spec, (message, field)
