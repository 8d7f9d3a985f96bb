"""TF Serving's model config file: our protos match tensorflow_serving's, what we write parses with
theirs field by field, labels and rollback refuse incomplete versions, content identity, mirrors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from airflow_savedmodel.errors import FormatError, NotFoundError, StorageError
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.protos import serving_config_pb2
from airflow_savedmodel.storage import list_versions, model_config, publish
from airflow_savedmodel.storage.publish import ServingTarget


def make_model(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return Path(export_dense_model(str(root / f"model-{seed}"), [layer]))


def _fields(descriptor: Any, out: dict[str, Any]) -> None:
    out[descriptor.full_name.split(".", 2)[-1]] = {
        f.number: (f.name, f.type, f.is_repeated, (f.message_type or f.enum_type or f).name)
        for f in descriptor.fields
    }
    for nested in descriptor.nested_types:
        _fields(nested, out)


def test_wire_compatible_with_tensorflow_serving() -> None:
    from tensorflow_serving.config import (
        file_system_storage_path_source_pb2,
        log_collector_config_pb2,
        logging_config_pb2,
        model_server_config_pb2,
    )

    theirs: dict[str, Any] = {}
    for module in (
        model_server_config_pb2,
        file_system_storage_path_source_pb2,
        logging_config_pb2,
        log_collector_config_pb2,
    ):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            _fields(message, theirs)
    ours: dict[str, Any] = {}
    for message in serving_config_pb2.DESCRIPTOR.message_types_by_name.values():
        _fields(message, ours)
    assert len(theirs) >= 14
    for name, fields in theirs.items():
        assert ours.get(name) == fields, name
    their_enum = model_server_config_pb2.ModelType.DESCRIPTOR
    assert {v.number: v.name for v in serving_config_pb2.ModelType.DESCRIPTOR.values} == {
        v.number: v.name for v in their_enum.values
    }


def test_written_config_parses_with_tensorflow_serving_field_by_field(tmp_path: Path) -> None:
    from tensorflow_serving.config import model_server_config_pb2

    config = resolve(str(tmp_path / "models.config"))
    base = resolve(str(tmp_path / "ranker"))
    first = publish(
        str(make_model(tmp_path, 1)), base, serving=ServingTarget(config, "ranker", labels=("canary",))
    )
    second = publish(str(make_model(tmp_path, 2)), base, serving=ServingTarget(config, "ranker"))
    model_config.set_labels(config, "ranker", base, {"stable": first.version})
    theirs = text_format.Parse(
        (tmp_path / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    expected = model_server_config_pb2.ModelServerConfig()
    model = expected.model_config_list.config.add(
        name="ranker", base_path=base.url, model_platform="tensorflow"
    )
    model.model_version_policy.specific.versions.extend([first.version, second.version])
    model.version_labels["canary"] = first.version
    model.version_labels["stable"] = first.version
    assert theirs == expected
    # and a config TF Serving's own protos write (other models, other fields) survives our update
    other = theirs.model_config_list.config.add(
        name="other", base_path="/srv/other", model_platform="tensorflow"
    )
    other.model_version_policy.latest.num_versions = 3
    other.logging_config.sampling_config.sampling_rate = 0.5
    (tmp_path / "models.config").write_text(text_format.MessageToString(theirs))
    model_config.promote(config, "ranker", base, from_label="canary", to_label="stable")
    after = text_format.Parse(
        (tmp_path / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    assert after.model_config_list.config[1] == other
    assert dict(after.model_config_list.config[0].version_labels) == {"canary": 1, "stable": 1}


def test_labels_and_rollback_refuse_incomplete_versions(tmp_path: Path) -> None:
    config = resolve(str(tmp_path / "models.config"))
    base = resolve(str(tmp_path / "ranker"))
    target = ServingTarget(config, "ranker", keep_served=1)
    numbers = [publish(str(make_model(tmp_path, i)), base, serving=target).version for i in range(3)]
    assert numbers == [1, 2, 3]
    assert model_config.describe(model_config.find(model_config.read(config), "ranker")).versions == [3]  # type: ignore[arg-type]
    model_config.set_labels(config, "ranker", base, {"stable": 3})
    # a partial version 4 (saved_model.pb without its variables) can be neither labelled nor rolled to
    shutil.copytree(tmp_path / "ranker" / "3", tmp_path / "ranker" / "4")
    shutil.rmtree(tmp_path / "ranker" / "4" / "variables")
    with pytest.raises(StorageError, match=r"ranker/4: version 4 is partial, not complete \(variables/"):
        model_config.set_labels(config, "ranker", base, {"canary": 4})
    with pytest.raises(NotFoundError, match=r"ranker/7: version 7 does not exist"):
        model_config.rollback(config, "ranker", base, version=7)
    # rollback without a target: the newest complete version below the label's, now served too
    model = model_config.rollback(config, "ranker", base, label="stable")
    assert model.labels == {"stable": 2} and model.versions == [2, 3]
    model = model_config.rollback(config, "ranker", base, label="stable")
    assert model.labels == {"stable": 1}
    with pytest.raises(StorageError, match="no complete version below 1 to roll back to"):
        model_config.rollback(config, "ranker", base, label="stable")
    with pytest.raises(NotFoundError, match="has no label 'canary'"):
        model_config.promote(config, "ranker", base)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        model_config.set_labels(config, "nope", base, {"stable": 1})


def test_config_errors_are_typed_and_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(FormatError, match=r"models.config: not a TensorFlow Serving model config: .*nme"):
        model_config.read(resolve(str(bad)))
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(FormatError, match=r"models\.config: model config file is not UTF-8 text"):
        model_config.read(resolve(str(bad)))


def test_unchanged_content_is_recognised_before_copying(tmp_path: Path) -> None:
    """An export of the same weights differs only in fingerprint.pb's uuid: no new version, nothing copied."""
    src = make_model(tmp_path, 5)
    again = make_model(tmp_path / "again", 5)
    assert (src / "fingerprint.pb").read_bytes() != (again / "fingerprint.pb").read_bytes()
    base = tmp_path / "serving"
    first = publish(str(src), str(base))
    before = sorted(p.name for p in base.iterdir())
    copied: list[Any] = []
    second = publish(str(again), str(base), progress=copied.append)
    assert (second.version, second.created) == (first.version, False)
    assert copied == [] and sorted(p.name for p in base.iterdir()) == before
    third = publish(str(make_model(tmp_path, 6)), str(base))
    assert (third.version, third.created) == (2, True)


def test_mirror_keeps_version_numbers(tmp_path: Path) -> None:
    primary, mirror = tmp_path / "serving", tmp_path / "mirror"
    for seed in (1, 2, 3):
        publish(str(make_model(tmp_path, seed)), str(primary))
    result = publish(str(primary / "2"), str(mirror), version="same")
    assert result.version == 2 and result.created
    assert publish(str(primary / "2"), str(mirror), version="same").created is False
    assert [i.version for i in list_versions(str(mirror))] == [2]
    with pytest.raises(StorageError, match='version "same" needs a source that ends in a version number'):
        publish(str(make_model(tmp_path, 9)), str(mirror), version="same")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in this process (the entry point itself is run from a fresh process by
    test_cli_read and test_cli_transforms)."""
    import contextlib
    import io

    from airflow_savedmodel.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return subprocess.CompletedProcess(["savedmodel", *args], code, out.getvalue(), err.getvalue())


def test_cli_gated_publish_labels_promote_rollback(tmp_path: Path) -> None:
    config, base = str(tmp_path / "models.config"), str(tmp_path / "ranker")
    for seed in (1, 2):
        out = run(
            "publish",
            str(make_model(tmp_path, seed)),
            base,
            "--serving-config",
            config,
            "--model-name",
            "ranker",
            "--label",
            "canary",
        )
        assert out.returncode == 0, out.stderr
    assert "serving config: ranker serves 1 2; labels: canary=2" in out.stdout
    out = run("serving", "promote", config, "--model-name", "ranker", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["labels"] == {"canary": 2, "stable": 2}
    out = run("serving", "rollback", config, "--model-name", "ranker")
    assert out.returncode == 0 and "labels: canary=2, stable=1" in out.stdout
    out = run("serving", "set-label", config, "--model-name", "ranker", "--label", "stable", "--version", "9")
    assert out.returncode == 1 and f"{base}/9: version 9 does not exist" in out.stderr
    out = run("serving", "show", str(tmp_path / "missing.config"))
    assert out.returncode == 1 and "missing.config: does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("publish", str(make_model(tmp_path, 3)), base, "--label", "canary")
    assert out.returncode == 2 and "--label needs --serving-config" in out.stderr
    out = run("gc", base, "--keep-last", "1", "--serving-config", config, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["removed"] == []  # 1 and 2 are named


def test_a_publish_to_another_base_path_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    config = resolve(str(tmp_path / "models.config"))
    base = str(tmp_path / "serving" / "ranker")
    publish(str(make_model(tmp_path, 1)), base, serving=ServingTarget(config, "ranker"))
    before = config.fs.cat_file(config.path)
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(StorageError) as caught:
        publish(str(make_model(tmp_path, 2)), str(elsewhere), serving=ServingTarget(config, "ranker"))
    assert caught.value.problem == (
        f"model 'ranker' is served from {base}, not {elsewhere}; publish there or name another model"
    )
    assert not elsewhere.exists() and config.fs.cat_file(config.path) == before
