"""Export in one pass: rewrites planned in memory, validated there, then published with every
other file copied as a publish copies; and the operators' names for it (no TensorFlow needed)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.format import transforms
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import Checks
from airflow_savedmodel.location import resolve
from airflow_savedmodel.protos import fingerprint_pb2
from airflow_savedmodel.storage import verify
from airflow_savedmodel.storage.export import export
from airflow_savedmodel.storage.manifest import MANIFEST_PATH


def unstripped_model(root: Path) -> Path:
    rng = np.random.default_rng(3)
    layers = [
        DenseLayer(rng.standard_normal((4, 5)).astype(np.float32), np.zeros(5, np.float32), "relu"),
        DenseLayer(rng.standard_normal((5, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax"),
    ]
    lean = export_dense_model(str(root / "lean"), layers)
    path = Path(transforms.add_default_attrs(lean, str(root / "trained")).dst)  # as TF writes it
    with SavedModel.open(str(path)) as model:  # pin a node, so clear_devices has work too
        proto = model.proto
    proto.meta_graphs[0].graph_def.node[0].device = "/device:GPU:0"
    (path / "saved_model.pb").write_bytes(proto.SerializeToString(deterministic=True))
    return path


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def fingerprint_fields(path: Path) -> dict[str, int]:
    fp = fingerprint_pb2.FingerprintDef.FromString((path / "fingerprint.pb").read_bytes())
    return {
        name: getattr(fp, name)
        for name in (
            "saved_model_checksum",
            "graph_def_program_hash",
            "signature_def_hash",
            "checkpoint_hash",
        )
    }


def test_one_pass_export_publishes_what_the_two_step_rewrite_writes(tmp_path: Path) -> None:
    src = unstripped_model(tmp_path)
    before = digest(src)
    steps = ["clear_devices", "strip_default_attrs"]
    reference = Path(transforms.rewrite(str(src), str(tmp_path / "reference"), steps).dst)

    result = export(
        resolve(str(src)), resolve(str(tmp_path / "base")), rewrites=steps, checks=Checks(deep=True)
    )

    assert result.published is not None and result.published.version == 1 and result.changed > 10
    assert result.report is not None and result.report.valid
    assert result.report.url == f"{src} (after clear devices + strip default attrs)"
    version = tmp_path / "base" / "1"
    got = digest(version)
    got.pop(MANIFEST_PATH)
    want = digest(reference)
    assert got.pop("fingerprint.pb") != want.pop("fingerprint.pb")  # a fresh uuid each time ...
    assert fingerprint_fields(version) == fingerprint_fields(reference)  # ... the same hashes
    assert got == want  # saved_model.pb byte for byte, variables unchanged
    with SavedModel.open(str(version)) as model:
        mg = model.meta_graphs[0].proto
        assert mg.meta_info_def.stripped_default_attrs and not any(n.device for n in mg.graph_def.node)
    assert verify(str(version)).ok
    assert digest(src) == before  # the source is only read

    again = export(resolve(str(src)), resolve(str(tmp_path / "base")), rewrites=steps, checks=Checks())
    assert again.published is not None and (again.published.version, again.published.created) == (1, False)


def test_an_invalid_rewrite_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    src = unstripped_model(tmp_path)
    base = tmp_path / "base"
    result = export(
        resolve(str(src)),
        resolve(str(base)),
        rewrites=["clear_devices", "strip_default_attrs"],
        checks=Checks(required_signatures=("predict_v2",)),
    )
    assert result.published is None and result.report is not None
    assert result.report.codes() == ["required-signature-missing"]
    assert "signature 'predict_v2' is missing" in result.report.to_text()
    assert not base.exists()


def test_validate_checks_the_planned_model_not_the_source(tmp_path: Path) -> None:
    src = unstripped_model(tmp_path)
    checks = Checks(target_tf="2.21", target_device="cpu")
    assert "device-pinned-accelerator" in checks.run(str(src)).codes()
    with SavedModel.open(str(src)) as model:
        plan = transforms.plan(model, ["clear_devices"])
        report = checks.run(plan.model)
        assert "device-pinned-accelerator" not in report.codes() and report.valid
        assert report.stats["saved_model_bytes"] == len(plan.files["saved_model.pb"])
        assert model.meta_graphs[0].proto.graph_def.node[0].device == "/device:GPU:0"  # untouched


def test_unknown_rewrites_are_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown rewrites \['strip'\]"):
        export(resolve(str(tmp_path / "nothing")), resolve(str(tmp_path / "base")), rewrites=["strip"])


def test_the_operators_follow_the_source_and_dest_conn_id_convention() -> None:
    from airflow.exceptions import AirflowProviderDeprecationWarning

    from airflow_savedmodel.operators.savedmodel import (
        SavedModelCopyOperator,
        SavedModelExportOperator,
        SavedModelPublishOperator,
        SavedModelStripDefaultAttrsOperator,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        publish = SavedModelPublishOperator(
            task_id="p", model_url="a", base_path="b", source_conn_id="s", dest_conn_id="d"
        )
        SavedModelCopyOperator(task_id="c", model_url="a", destination_url="b", source_conn_id="s")
        SavedModelExportOperator(task_id="e", model_url="a", base_path="b", source_conn_id="s")
    assert (publish.source_conn_id, publish.dest_conn_id, publish.version) == ("s", "d", "auto")
    assert {"model_url", "base_path", "source_conn_id", "dest_conn_id"} <= set(publish.template_fields)

    with pytest.warns(AirflowProviderDeprecationWarning, match="use SavedModelPublishOperator"):
        SavedModelCopyOperator(task_id="c2", model_url="a", destination_url="b", version="auto")
    for operator, kwargs in (
        (SavedModelExportOperator, {"model_url": "a", "base_path": "b"}),
        (SavedModelStripDefaultAttrsOperator, {"model_url": "a", "destination_url": "b"}),
    ):
        with pytest.warns(AirflowProviderDeprecationWarning, match="savedmodel_conn_id is deprecated"):
            task = operator(task_id=f"old_{operator.__name__}", savedmodel_conn_id="old", **kwargs)
        assert task.source_conn_id == "old"


def test_the_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_savedmodel.cli import main

    src = unstripped_model(tmp_path)
    base = tmp_path / "base"
    assert main(["export", str(src), str(base), "--clear-devices", "--target-tf", "2.21", "--deep"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"published version 1: {base / '1'}"
    with SavedModel.open(str(base / "1")) as model:
        assert model.meta_graphs[0].proto.meta_info_def.stripped_default_attrs

    assert main(["export", str(src), str(base), "--keep-default-attrs", "--required-signature", "v2"]) == 1
    captured = capsys.readouterr()
    assert f"INVALID: {src}\n" in captured.out  # nothing was rewritten: the report names the source
    assert "required-signature-missing {serve}: signature 'v2' is missing" in captured.out
    assert "not published: the model is invalid" in captured.err
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["1"]


def test_export_adds_warmup_requests_checked_with_the_model(tmp_path: Path) -> None:
    from airflow_savedmodel.format import warmup
    from airflow_savedmodel.storage.export import Warmup

    src = unstripped_model(tmp_path)
    inputs = {"x": np.ones((2, 4), np.float32)}
    result = export(
        resolve(str(src)),
        resolve(str(tmp_path / "base")),
        rewrites=["clear_devices", "strip_default_attrs"],
        checks=Checks(),
        warmup=Warmup(inputs, count=3),
    )
    assert result.report is not None and "warmup requests" in result.report.checks
    published = tmp_path / "base" / "1" / warmup.WARMUP_FILE
    data = published.read_bytes()
    assert len([r for _, r in warmup.records(__import__("io").BytesIO(data), len(data))]) == 3
    assert not (src / "assets.extra").exists()  # the source is only read
    assert verify(str(tmp_path / "base" / "1")).ok and "saved_model.pb" in {
        p.name for p in (tmp_path / "base" / "1").iterdir()
    }

    with pytest.raises(__import__("airflow_savedmodel.errors").errors.InputMismatchError, match="DT_FLOAT"):
        export(
            resolve(str(src)),
            resolve(str(tmp_path / "other")),
            checks=Checks(),
            warmup=Warmup({"x": np.ones((2, 4), np.int64)}),
        )
    assert not (tmp_path / "other").exists()


def test_the_warmup_command_and_export_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_savedmodel.cli import main
    from airflow_savedmodel.format import warmup

    src = unstripped_model(tmp_path)
    npz = tmp_path / "inputs.npz"
    np.savez(npz, x=np.ones((3, 4), np.float32))
    assert main(["warmup", str(src), "--inputs", str(npz), "--warmup-count", "2"]) == 0
    assert (
        f"wrote 2 warmup request(s) for 'serving_default' to {src / warmup.WARMUP_FILE}"
        in capsys.readouterr().out
    )
    assert main(["warmup", str(src), "--inputs", str(npz)]) == 1
    assert "a warmup file exists (replace it with --overwrite, overwrite=True)" in capsys.readouterr().err
    assert validate_clean(src)

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((3, 5), np.float32))
    base = tmp_path / "base"
    assert main(["export", str(src), str(base), "--inputs", str(bad)]) == 1
    assert "input 'x' has shape [3, 5]; the signature takes (-1, 4)" in capsys.readouterr().err
    assert main(["export", str(src), str(base), "--inputs", str(npz), "--warmup-count", "5"]) == 1
    assert "device-pinned-accelerator" in capsys.readouterr().out  # a CPU server could not place it
    assert (
        main(
            [
                "export",
                str(src),
                str(base),
                "--inputs",
                str(npz),
                "--warmup-count",
                "5",
                "--clear-devices",
            ]
        )
        == 0
    )
    data = (base / "1" / warmup.WARMUP_FILE).read_bytes()
    assert len(list(warmup.records(__import__("io").BytesIO(data), len(data)))) == 5
    (tmp_path / "pickled.npz").write_bytes(b"PK\x03\x04 not really")
    assert main(["warmup", str(src), "--inputs", str(tmp_path / "pickled.npz"), "--overwrite"]) == 1
    assert "not a numpy .npz file of arrays" in capsys.readouterr().err
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    assert main(["warmup", str(src), "--inputs", str(tmp_path / "text.npz"), "--overwrite"]) == 1
    assert (
        f"{tmp_path / 'text.npz'}: not a numpy .npz file (numpy.savez writes a zip archive)"
        in capsys.readouterr().err
    )


def validate_clean(model: Path) -> bool:
    from airflow_savedmodel.format.validate import validate

    report = validate(str(model), target_device="gpu")  # its one node is pinned to a GPU
    return report.valid and "warmup requests" in report.checks


def test_export_refuses_a_change_that_breaks_clients_of_the_served_version(tmp_path: Path) -> None:
    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    first = export_dense_model(str(tmp_path / "v1"), [layer])
    renamed = export_dense_model(str(tmp_path / "v2"), [layer], input_key="features")
    more = export_dense_model(
        str(tmp_path / "v3"),
        [layer, layer.__class__(np.ones((3, 3), np.float32), np.ones(3, np.float32), "softmax")],
    )
    base = resolve(str(tmp_path / "base"))
    checks = Checks()
    assert (
        export(resolve(first), base, checks=checks, compatible_with="served").published is not None
    )  # nothing to compare yet

    refused = export(resolve(renamed), base, checks=checks, compatible_with="served")
    assert refused.published is None and refused.report is not None
    assert refused.report.codes() == ["signature-breaking-change", "signature-breaking-change"]
    text = refused.report.to_text()
    assert (
        "input 'features' of 'serving_default' added" in text
        and "input 'x' of 'serving_default' removed" in text
    )
    assert f"signatures compatible with {tmp_path / 'base' / '1'}" in refused.report.checks
    assert sorted(p.name for p in (tmp_path / "base").iterdir() if p.name.isdigit()) == ["1"]

    accepted = export(resolve(more), base, checks=checks, compatible_with="served")
    assert accepted.published is not None and accepted.published.version == 2


def test_export_requires_a_release_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Written with 2.21's defaults, the model carries MatMul.grad_a/grad_b, which 2.12-2.15 do not
    know: a required 2.12+ is met only once they are stripped; until then nothing is published."""
    from airflow_savedmodel.cli import main

    src = unstripped_model(tmp_path)
    checks = Checks(require_releases="2.12+")
    kept = export(
        resolve(str(src)), resolve(str(tmp_path / "kept")), rewrites=["clear_devices"], checks=checks
    )
    assert kept.published is None and kept.report is not None
    assert kept.report.codes() == ["release-range-unmet"]
    assert (
        "serves on 2.16-2.21; 2.12: attr MatMul.grad_a unknown (strip fixes it)"
        in kept.report.findings[0].message
    )
    assert not (tmp_path / "kept").exists()
    stripped = export(
        resolve(str(src)),
        resolve(str(tmp_path / "stripped")),
        rewrites=["clear_devices", "strip_default_attrs"],
        checks=checks,
    )
    assert stripped.published is not None and stripped.report is not None and stripped.report.valid
    assert stripped.report.serves_on("cpu") == "2.12-2.21"

    base = tmp_path / "cli"
    args = ["export", str(src), str(base), "--clear-devices", "--require-releases", "2.12+"]
    assert main([*args, "--keep-default-attrs"]) == 1
    assert "release-range-unmet" in capsys.readouterr().out and not base.exists()
    assert main(args) == 0
    assert (base / "1" / "saved_model.pb").exists()
