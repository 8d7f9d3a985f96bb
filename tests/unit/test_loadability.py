"""What a TensorFlow release can serve, decided from the shipped registries, on graphs the package
writes itself and edits by hand (no TensorFlow here; tests/interop/test_loadability.py checks the
verdicts against TensorFlow's loader)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import FormatError, NotFoundError
from airflow_savedmodel.format import loadability, opdefs
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import parse_release_range, validate
from airflow_savedmodel.protos import meta_graph_pb2, types_pb2


def _model(tmp_path: Path, edit: Callable[[meta_graph_pb2.MetaGraphDef], None] | None = None) -> Path:
    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    path = Path(export_dense_model(str(tmp_path / "model"), [layer]))
    if edit is not None:
        file = path / "saved_model.pb"
        proto = meta_graph_pb2.SavedModel.FromString(file.read_bytes())
        edit(proto.meta_graphs[0])
        file.write_bytes(proto.SerializeToString())
    return path


def test_every_shipped_release_has_its_kernels_and_graph_versions() -> None:
    releases = opdefs.releases()
    assert releases[0] == "2.12" and releases[-1] == "2.21" and len(releases) == 10
    for release in releases:
        kernels = opdefs.kernels(release)
        devices = {k.device_type for k in kernels["MatMul"]}
        assert devices == {"CPU", "GPU"}, release  # GPU kernels: dumped from the full wheel
        assert "BoostedTreesBucketize" in opdefs.registry(release)
        version, min_producer = opdefs.graph_versions(release)
        assert version > 1000 and min_producer == 0
    assert [opdefs.graph_versions(r)[0] for r in releases] == sorted(
        opdefs.graph_versions(r)[0] for r in releases
    )


def test_a_clean_model_serves_on_every_release_and_device(tmp_path: Path) -> None:
    report = validate(str(_model(tmp_path)), releases=True)
    assert report.valid, report.to_text()
    assert "target TensorFlow 2.21 (cpu)" in report.checks and "release range" in report.checks
    assert report.to_json()["releases"]["serves_on"] == {"cpu": "2.12-2.21", "gpu": "2.12-2.21"}


def test_a_node_whose_types_no_kernel_takes(tmp_path: Path) -> None:
    """MatMul exists on CPU, but not for strings: TensorFlow's kernel lookup checks constraints."""

    def string_matmul(mg: meta_graph_pb2.MetaGraphDef) -> None:
        node = mg.graph_def.node.add(name="strings", op="MatMul")
        node.input.extend(["x", "x"])
        node.attr["T"].type = types_pb2.DT_STRING

    report = validate(str(_model(tmp_path, string_matmul)))
    assert report.codes() == ["op-no-kernel"]
    assert (
        "op MatMul (1 nodes) has no CPU kernel for T=DT_STRING in TensorFlow 2.21"
        in report.findings[0].message
    )


def test_a_gpu_server_runs_cpu_only_ops_on_its_cpu_unless_pinned(tmp_path: Path) -> None:
    """DecodeJpeg has only a CPU kernel: a GPU server places it on its CPU, but not when the node
    is pinned to the GPU."""

    def jpeg(device: str) -> Callable[[meta_graph_pb2.MetaGraphDef], None]:
        def edit(mg: meta_graph_pb2.MetaGraphDef) -> None:
            mg.graph_def.node.add(name="jpeg", op="DecodeJpeg", device=device).input.append("x")

        return edit

    assert {k.device_type for k in opdefs.kernels()["DecodeJpeg"]} == {"CPU"}
    free = _model(tmp_path / "free", jpeg(""))
    assert validate(str(free), target_device="gpu").valid
    pinned = _model(tmp_path / "pinned", jpeg("/device:GPU:0"))
    assert validate(str(pinned), target_device="gpu").codes() == ["op-no-kernel"]
    assert validate(str(pinned)).codes() == ["device-pinned-accelerator"]  # CPU target


def test_graph_version_stamps_outside_a_release_range(tmp_path: Path) -> None:
    def newer(mg: meta_graph_pb2.MetaGraphDef) -> None:
        mg.graph_def.versions.min_consumer = 1900  # needs 2.18's consumer (1994) or newer

    report = validate(str(_model(tmp_path / "newer", newer)), releases=True, target_tf="2.17")
    assert report.codes() == ["graph-version-unsupported"]
    assert (
        "needs a consumer of GraphDef version 1900 or newer; TensorFlow 2.17 is 1882"
        in report.findings[0].message
    )
    assert report.serves_on("cpu") == "2.18-2.21"

    def bad(mg: meta_graph_pb2.MetaGraphDef) -> None:
        mg.graph_def.versions.bad_consumers.append(opdefs.graph_versions("2.20")[0])

    report = validate(str(_model(tmp_path / "bad", bad)), releases=True)
    assert report.valid and report.serves_on("cpu") == "2.12-2.19, 2.21"


def test_a_required_range_the_model_misses(tmp_path: Path) -> None:
    def newer(mg: meta_graph_pb2.MetaGraphDef) -> None:
        mg.graph_def.versions.min_consumer = 1900

    report = validate(str(_model(tmp_path, newer)), require_releases="2.17-2.21")
    assert report.codes() == ["release-range-unmet"]
    assert report.findings[0].message == (
        "required TensorFlow 2.17-2.21 on CPU, but it serves on 2.18-2.21; 2.17: GraphDef version out of range"
    )


def test_release_ranges() -> None:
    assert parse_release_range("2.15-2.21") == [f"2.{m}" for m in range(15, 22)]
    assert parse_release_range("2.20+") == ["2.20", "2.21"]
    assert parse_release_range("2.15") == ["2.15"]
    with pytest.raises(FormatError, match=r"release range 'banana' is not like 2\.15-2\.21, 2\.15\+"):
        parse_release_range("banana")
    with pytest.raises(NotFoundError, match=r"no shipped release in '3\.0\+'"):
        parse_release_range("3.0+")
    verdicts = [("2.12", False), ("2.13", True), ("2.14", True), ("2.15", False), ("2.16", True)]
    assert loadability.serving_range(verdicts) == "2.13-2.14, 2.16"
    assert loadability.serving_range([("2.12", False)]) == "none"


def test_an_output_that_needs_a_placeholder_the_signature_does_not_take(tmp_path: Path) -> None:
    def masked(take_mask: bool) -> Callable[[meta_graph_pb2.MetaGraphDef], None]:
        def edit(mg: meta_graph_pb2.MetaGraphDef) -> None:
            mask = mg.graph_def.node.add(name="mask", op="Placeholder")
            mask.attr["dtype"].type = types_pb2.DT_FLOAT
            mul = mg.graph_def.node.add(name="masked", op="Mul")
            mul.input.extend(["y", "mask"])
            mul.attr["T"].type = types_pb2.DT_FLOAT
            sig = mg.signature_def["serving_default"]
            sig.outputs["y"].name = "masked:0"
            if take_mask:
                sig.inputs["mask"].name = "mask:0"
                sig.inputs["mask"].dtype = types_pb2.DT_FLOAT

        return edit

    report = validate(str(_model(tmp_path / "unfed", masked(False))))
    assert report.codes() == ["signature-input-unfed"]
    assert report.findings[0].message.startswith(
        "signature 'serving_default' output 'y' needs placeholder 'mask', which is not among the signature's inputs"
    )
    assert validate(str(_model(tmp_path / "fed", masked(True)))).valid


def test_add_takes_the_target_releases_defaults(tmp_path: Path) -> None:
    """``strip-default-attrs --add``: the defaults the loading release's importer adds (MatMul's
    grad_a/grad_b exist from 2.16 on), not those of whichever registry wrote the model."""
    from airflow_savedmodel.cli import main

    src = _model(tmp_path)
    for release, expected in (("2.12", False), ("2.21", True), (None, True)):
        dst = tmp_path / f"added-{release}"
        flags = ["--target-tf", release] if release else []
        assert main(["strip-default-attrs", str(src), str(dst), "--add", *flags]) == 0
        proto = meta_graph_pb2.SavedModel.FromString((dst / "saved_model.pb").read_bytes())
        matmul = next(n for n in proto.meta_graphs[0].graph_def.node if n.op == "MatMul")
        assert ("grad_a" in matmul.attr) is expected, release
        assert "transpose_a" in matmul.attr
