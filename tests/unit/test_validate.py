"""Validation: TensorFlow-written models validate clean; each seeded defect yields exactly its code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel import location
from airflow_savedmodel.format import attrs, protoio
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import FINDING_CODES, validate
from airflow_savedmodel.protos import meta_graph_pb2

import tf_zoo

SPEC = {
    "signatures": {
        "serving_default": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {"x": {"dtype": "float32", "shape": [None, 3]}},
            "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1, 2]}},
        }
    }
}


@pytest.mark.parametrize("name", list(tf_zoo.BUILDERS))
def test_tensorflow_models_validate_clean(name: str, zoo: dict[str, Path]) -> None:
    report = validate(str(zoo[name]), deep=True)
    assert report.valid and report.findings == [], report.to_text()
    assert report.stats["total_bytes"] > 0


def _rewrite_proto(path: Path, change: Callable[[meta_graph_pb2.SavedModel], None]) -> None:
    pb = path / "saved_model.pb"
    proto = meta_graph_pb2.SavedModel.FromString(pb.read_bytes())
    change(proto)
    pb.write_bytes(proto.SerializeToString())


def _delete_shard(p: Path) -> None:
    (p / "variables" / "variables.data-00001-of-00003").unlink()


def _flip_data_byte(p: Path) -> None:
    shard = p / "variables" / "variables.data-00002-of-00003"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))


def _truncate_index(p: Path) -> None:
    index = p / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-20])


def _remove_variables(p: Path) -> None:
    shutil.rmtree(p / "variables")


def _remove_asset(p: Path) -> None:
    (p / "assets" / "vocab.txt").unlink()


def _rename_input(p: Path) -> None:
    def change(proto: meta_graph_pb2.SavedModel) -> None:
        sig = proto.meta_graphs[0].signature_def["serving_default"]
        sig.inputs["features"].CopyFrom(sig.inputs["x"])
        del sig.inputs["x"]

    _rewrite_proto(p, change)


def _escaping_asset(p: Path) -> None:
    def change(proto: meta_graph_pb2.SavedModel) -> None:
        proto.meta_graphs[0].asset_file_def[0].filename = "../../etc/passwd"

    _rewrite_proto(p, change)


def _drop_an_output_node(p: Path) -> None:
    def change(proto: meta_graph_pb2.SavedModel) -> None:
        proto.meta_graphs[0].signature_def["serving_default"].outputs["y"].name = "gone:0"

    _rewrite_proto(p, change)


def _wrong_signature_dtype(p: Path) -> None:
    def change(proto: meta_graph_pb2.SavedModel) -> None:
        proto.meta_graphs[0].signature_def["serving_default"].inputs[
            "x"
        ].dtype = 9  # the placeholder is float

    _rewrite_proto(p, change)


@pytest.mark.parametrize(
    ("model", "defect", "code", "kwargs"),
    [
        ("sharded", _delete_shard, "variables-shard-missing", {}),
        ("sharded", _flip_data_byte, "variables-checksum-mismatch", {"deep": True}),
        ("tf2_module", _truncate_index, "variables-index-unreadable", {}),
        ("tf2_module", _remove_variables, "variables-missing", {}),
        ("tf2_module", _remove_asset, "asset-missing", {}),
        ("tf2_module", _rename_input, "expect-input-missing", {"expect": SPEC}),
        ("tf2_module", _escaping_asset, "asset-path-escapes", {}),
        ("tf2_module", _drop_an_output_node, "signature-tensor-missing", {}),
        ("tf2_module", _wrong_signature_dtype, "signature-dtype-mismatch", {}),
    ],
)
def test_each_seeded_defect_yields_exactly_its_code(
    model: str, defect: Callable[[Path], None], code: str, kwargs: dict, model_copy: Callable[[str], Path]
) -> None:
    path = model_copy(model)
    assert validate(str(path), expect=SPEC if "expect" in kwargs else None, deep=True).valid
    defect(path)
    report = validate(str(path), **kwargs)
    assert report.codes() == [code], report.to_text()
    assert not report.valid
    assert code in FINDING_CODES


def test_flipped_byte_is_invisible_without_deep(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("sharded")
    _flip_data_byte(path)
    assert validate(str(path)).valid
    assert validate(str(path), deep=True).codes() == ["variables-checksum-mismatch"]


def test_newer_release_attr_against_older_target_is_fixable_by_stripping(
    model_copy: Callable[[str], Path], tmp_path: Path
) -> None:
    from airflow_savedmodel.format import transforms

    rng = np.random.default_rng(0)
    lean = export_dense_model(
        str(tmp_path / "lean"), [DenseLayer(rng.standard_normal((3, 2)), rng.standard_normal(2), "relu")]
    )
    assert validate(lean, target_tf="2.12").valid
    url = transforms.add_default_attrs(lean, str(tmp_path / "m")).dst  # every 2.21 default written out
    assert validate(url, target_tf="2.21").valid
    report = validate(url, target_tf="2.12")
    assert set(report.codes()) == {"attr-default-unknown-in-target"}, report.to_text()
    assert {f.fix for f in report.findings} == {"strip_default_attrs"}
    assert any("MatMul.grad_a" in f.message for f in report.findings)
    transforms.strip_default_attrs(url, str(tmp_path / "stripped"))
    assert validate(str(tmp_path / "stripped"), target_tf="2.12").valid


def test_non_default_new_attr_and_unknown_op_are_not_fixable(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf2_module")
    report = validate(str(path), target_tf="2.12")
    assert report.codes() == ["attr-unknown-in-target"]
    assert "VarHandleOp.debug_name" in report.findings[0].message and report.findings[0].fix is None

    def change(proto: meta_graph_pb2.SavedModel) -> None:
        node = proto.meta_graphs[0].graph_def.node.add(name="future", op="FancyNewOp")
        node.device = "/device:GPU:0"

    _rewrite_proto(path, change)
    codes = validate(str(path), target_tf="2.21").codes()
    assert sorted(codes) == ["device-pinned-accelerator", "op-unknown-in-target"]
    assert (
        "device-pinned-accelerator" not in validate(str(path), target_tf="2.21", target_device="gpu").codes()
    )


def test_contract_checks(zoo: dict[str, Path]) -> None:
    model = str(zoo["tf2_module"])
    assert validate(model, expect=SPEC).valid
    assert validate(model, expect=SPEC, strict=True).valid
    spec = json.loads(json.dumps(SPEC))
    spec["signatures"]["serving_default"]["inputs"]["x"] = {"dtype": "int64", "shape": [None, 4]}
    spec["signatures"]["serving_default"]["outputs"] = {}
    spec["signatures"]["serving_default"]["method_name"] = "tensorflow/serving/classify"
    spec["signatures"]["missing"] = {}
    codes = validate(model, expect=spec, strict=True).codes()
    assert sorted(codes) == sorted(
        [
            "expect-method-mismatch",
            "expect-dtype-mismatch",
            "expect-shape-mismatch",
            "expect-output-unexpected",
            "expect-signature-missing",
        ]
    )
    assert "expect-output-unexpected" not in validate(model, expect=spec).codes()


def test_structure_findings(model_copy: Callable[[str], Path], zoo: dict[str, Path]) -> None:
    # A train graph needs no serving_default unless the caller names it (TF Serving serves "serve").
    assert validate(str(zoo["tf1_builder"]), tags="train").codes() == []
    named = validate(str(zoo["tf1_builder"]), tags="train", required_signatures=["serving_default"])
    assert named.codes() == ["required-signature-missing"]
    assert validate(str(zoo["tf1_builder"]), tags="eval").codes() == ["tag-set-missing"]
    assert validate(str(zoo["tf1_builder"]), tags="train", required_signatures=["train"]).valid
    path = model_copy("tf1_builder")

    def duplicate(proto: meta_graph_pb2.SavedModel) -> None:
        proto.meta_graphs.append(proto.meta_graphs[1])
        proto.saved_model_schema_version = 3

    _rewrite_proto(path, duplicate)
    assert sorted(validate(str(path)).codes()) == ["duplicate-tag-set", "unknown-schema-version"]
    assert validate("/nonexistent").codes() == ["saved-model-unreadable"]


def test_variable_the_graph_restores_must_be_in_the_bundle(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf1_partitioned")
    from airflow_savedmodel.format import sstable

    index = path / "variables" / "variables.index"
    items = [(k, v) for k, v in sstable.read_table(index.read_bytes(), "i") if k != b"r"]
    index.write_bytes(sstable.build_table(items))
    report = validate(str(path))
    assert report.codes() == ["variable-not-in-bundle"] and "'r'" in report.findings[0].message


def test_size_warning_names_the_largest_constants(zoo: dict[str, Path]) -> None:
    report = validate(str(zoo["tf1_builder"]), size_warning_bytes=1000)
    assert report.codes() == ["saved-model-large"]
    assert report.valid and "bytes" in report.findings[0].message


def test_cli_exit_codes_and_json(
    zoo: dict[str, Path], model_copy: Callable[[str], Path], tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow_savedmodel", "validate", *map(str, args)],
            capture_output=True,
            text=True,
        )

    spec = tmp_path / "spec.yaml"
    import yaml

    spec.write_text(yaml.safe_dump(SPEC))
    ok = run(zoo["tf2_module"], "--deep", "--expect", spec, "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["schema"] == "airflow-savedmodel/validate/v1" and doc["valid"] and doc["findings"] == []
    broken = model_copy("tf2_module")
    _remove_asset(broken)
    bad = run(broken)
    assert bad.returncode == 1 and "INVALID" in bad.stdout and "asset-missing" in bad.stdout
    assert run(zoo["tf2_module"], "--target-device", "fpga").returncode == 2
    missing_spec = run(zoo["tf2_module"], "--expect", tmp_path / "nope.yaml")  # a usage mistake
    assert missing_spec.returncode == 2 and f"argument --expect: no such file: {tmp_path / 'nope.yaml'}" in (
        missing_spec.stderr
    )


def test_tf1_asset_collection_is_checked(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("tf1_builder")
    (path / "assets" / "labels.txt").unlink()
    report = validate(str(path))
    assert (
        set(report.codes()) == {"asset-missing"} and len(report.findings) == 3
    )  # named by all three meta graphs
    with SavedModel.open(str(path)) as model:
        value = model.meta_graphs[0].proto.collection_def["saved_model_assets"].any_list.value[0]
        assert protoio.unpack_any(value, meta_graph_pb2.AssetFileDef) is not None
    assert attrs.op_nodes is not None


def test_a_report_on_a_rewritten_copy_names_the_users_model() -> None:
    from airflow_savedmodel.format.validate import Finding, Report

    report = Report(
        "/tmp/savedmodel-export-x/stripped",
        [
            Finding(
                "error",
                "attr-unknown-in-target",
                "bad",
                file="/tmp/savedmodel-export-x/stripped/saved_model.pb",
            )
        ],
    )
    shown = report.shown_as("gs://b/exports/model", "strip default attrs")
    assert shown.url == "gs://b/exports/model (after strip default attrs)"
    assert shown.findings[0].file == "gs://b/exports/model/saved_model.pb"
    assert "savedmodel-export" not in shown.to_text() and not shown.valid
    assert report.url == "/tmp/savedmodel-export-x/stripped"  # the original is left as it was


def test_deep_checks_run_concurrently_and_name_each_corrupted_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of a few KB, so the shard is checked as many runs on several threads: the two
    tensors corrupted (in different runs) are each named, the others are not."""
    from airflow_savedmodel.format import bundle

    rng = np.random.default_rng(0)
    layers = [
        DenseLayer(
            rng.standard_normal((64, 64), np.float32), rng.standard_normal(64).astype(np.float32), "relu"
        )
        for _ in range(6)
    ]
    path = Path(export_dense_model(str(tmp_path / "model"), layers))
    monkeypatch.setattr(bundle, "_VERIFY_TASK_BYTES", 4096)
    monkeypatch.setattr(bundle, "_VERIFY_WORKERS", 3)
    with bundle.BundleReader(*location.resolve(str(path / "variables" / "variables"))) as reader:
        entries = {e.name: e for e in reader.entries()}
        assert len(bundle._runs(sorted(entries.values(), key=lambda e: e.offset), 4096)) >= 6
    shard = next((path / "variables").glob("variables.data-*"))
    data = bytearray(shard.read_bytes())
    for name in ("dense_1/kernel", "dense_4/bias"):
        data[entries[name].offset + entries[name].size // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    report = validate(str(path), deep=True)
    assert report.codes() == ["variables-checksum-mismatch"] * 2, report.to_text()
    assert [f.message for f in report.findings] == [
        f"tensor {name!r}: data checksum mismatch"
        for name in sorted(("dense_1/kernel", "dense_4/bias"), key=lambda n: entries[n].offset)
    ]
    assert all(f.file and f.file.endswith(shard.name) for f in report.findings)
