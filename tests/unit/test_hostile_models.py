"""Hostile models, each small on disk: every one ends in a typed error or a finding naming the
file, and memory stays bounded by what the files hold (the CLI runs under a 2 GiB address-space
limit here, so an allocation the files do not justify fails the test instead of the machine).

The cases come from issue 12's fuzzing run; they are built with the project's own writer, so
this module needs no TensorFlow."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format import bundle as bundles
from airflow_savedmodel.format.bundle import BundleReader, BundleWriter
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.protos import meta_graph_pb2

ADDRESS_SPACE = 2 << 30


def dense_model(root: Path) -> Path:
    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    return Path(export_dense_model(str(root / "model"), [layer]))


def edit_graph(model: Path, change) -> None:  # type: ignore[no-untyped-def]
    proto = meta_graph_pb2.SavedModel()
    proto.ParseFromString((model / "saved_model.pb").read_bytes())
    change(proto.meta_graphs[0])
    (model / "saved_model.pb").write_bytes(proto.SerializeToString())


def cli_bounded(*args: str) -> subprocess.CompletedProcess[str]:
    """`savedmodel ARGS` in a child limited to 2 GiB of address space and 60 s."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    code = "import sys; from airflow_savedmodel.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, preexec_fn=limit
    )


def test_a_string_length_beyond_2_64_is_a_format_error(tmp_path: Path) -> None:
    prefix = str(tmp_path / "variables" / "variables")
    with BundleWriter(__import__("fsspec").filesystem("file"), prefix) as writer:
        writer.add("words", np.array([b"x" * 20], dtype=object))
    shard = Path(bundles.data_path(prefix, 0, 1))
    data = bytearray(shard.read_bytes())
    data[0:10] = b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02"  # varint 2**64, the entry keeps its size
    shard.write_bytes(bytes(data))
    with (
        BundleReader(__import__("fsspec").filesystem("file"), prefix) as reader,
        pytest.raises(FormatError) as caught,
    ):
        reader.read("words")
    assert (
        caught.value.problem
        == "tensor 'words': string 0 claims 18446744073709551616 bytes; the entry holds 25"
    )
    assert caught.value.path == str(shard)


def test_a_signature_on_an_unpack_claiming_2_31_outputs_is_checked_without_allocating(tmp_path: Path) -> None:
    model = dense_model(tmp_path)

    def add_unpack(mg: meta_graph_pb2.MetaGraphDef) -> None:
        node = mg.graph_def.node.add(name="huge", op="Unpack", input=["x"])
        node.attr["num"].i = 2**31
        node.attr["T"].type = 1
        node.attr["axis"].i = 0
        outputs = mg.signature_def["serving_default"].outputs
        outputs["fine"].name, outputs["fine"].dtype = "huge:5", 1
        outputs["beyond"].name, outputs["beyond"].dtype = "huge:3000000000", 1

    edit_graph(model, add_unpack)
    done = cli_bounded("validate", str(model), "--json")
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["findings"]
    assert [(f["code"], f["message"]) for f in findings] == [
        (
            "signature-output-index",
            "signature 'serving_default' output 'beyond' (huge:3000000000): Unpack node has 2147483648 outputs",
        )
    ]


@pytest.mark.parametrize(
    ("dims", "problem"),
    [
        ([2**28], "filling its 268,435,456 elements would take 2,147,483,648 bytes"),
        ([0, 2**63 - 1], "larger than any tensor can be"),
    ],
)
def test_restore_names_declaring_a_huge_shape_are_not_expanded(
    tmp_path: Path, dims: list[int], problem: str
) -> None:
    model = dense_model(tmp_path)

    def enlarge(mg: meta_graph_pb2.MetaGraphDef) -> None:
        (names,) = [n for n in mg.graph_def.node if n.name == "save/RestoreV2/tensor_names"]
        tensor = names.attr["value"].tensor
        del tensor.string_val[:]
        del tensor.tensor_shape.dim[:]
        for size in dims:
            tensor.tensor_shape.dim.add(size=size)

    edit_graph(model, enlarge)
    done = cli_bounded("validate", str(model), "--deep", "--json")
    assert done.returncode in (0, 1), done.stderr  # a verdict, not a MemoryError or a traceback
    assert "Traceback" not in done.stderr
    from airflow_savedmodel.format import tensor_proto

    (names,) = [
        n
        for n in __import__("airflow_savedmodel.format.model", fromlist=["SavedModel"])
        .SavedModel.open(str(model))
        .meta_graphs[0]
        .proto.graph_def.node
        if n.name == "save/RestoreV2/tensor_names"
    ]
    with pytest.raises(FormatError) as caught:
        tensor_proto.to_numpy(names.attr["value"].tensor)
    assert problem in caught.value.problem


def test_a_partitioned_variable_with_an_enlarged_full_shape_is_refused_and_invalid(tmp_path: Path) -> None:
    model = dense_model(tmp_path)
    fs = __import__("fsspec").filesystem("file")
    prefix = str(model / "variables" / "variables")
    with BundleReader(fs, prefix) as reader:
        kept = {name: reader.read(name) for name in reader.names()}
    with BundleWriter(fs, prefix) as writer:
        for name, value in kept.items():
            writer.add(name, value)
        for start in (0, 2):  # two [2, 3] slices of a tensor whose full shape claims 2**40 columns
            writer.add_slice("part", (4, 1 << 40), ((start, 2), (0, -1)), np.ones((2, 3), np.float32))
    with BundleReader(fs, prefix) as reader, pytest.raises(FormatError) as caught:
        reader.read("part")
    assert caught.value.problem == (
        "tensor 'part': slice ((0, 2), (0, -1)) covers [2, 1099511627776] but its stored data has shape [2, 3] (24 bytes)"
    )
    report = validate(str(model), deep=True)
    assert [f.code for f in report.findings] == ["variables-slices-inconsistent"]
    done = cli_bounded("variables", str(model), "part", "--values")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "covers [2, 1099511627776] but its stored data has shape [2, 3]" in done.stderr


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"signatures": {"serving_default": {"inputs": ["x"]}}},
            "signature spec: signatures.serving_default.inputs: ['x'] is not of type 'object', 'null'",
        ),
        (
            {"signatures": {"serving_default": {"inputs": {"x": {"shape": "4"}}}}},
            "signature spec: signatures.serving_default.inputs.x.shape: '4' is not of type 'array', 'null'",
        ),
        ({"signature": {}}, "signature spec: (the document): 'signatures' is a required property"),
        (
            {"signatures": {"serving_default": {"inputs": {"x": {"dtype": "floot32"}}}}},
            "signature spec: signatures.serving_default.inputs.x.dtype: unknown dtype 'floot32'",
        ),
    ],
)
def test_a_malformed_signature_spec_names_the_offending_field(
    tmp_path: Path, spec: dict, problem: str
) -> None:
    model = dense_model(tmp_path)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = cli_bounded("validate", str(model), "--expect", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(f"{path}: {problem}")


def test_a_manifest_naming_files_outside_the_model_is_refused(tmp_path: Path) -> None:
    from airflow_savedmodel.storage import manifest as manifests
    from airflow_savedmodel.storage import publish, verify

    published = publish(str(dense_model(tmp_path)), str(tmp_path / "serving"))
    path = Path(published.url) / manifests.MANIFEST_PATH
    doc = json.loads(path.read_text())
    doc["files"].append({"path": "../../../etc/hostname", "size": 1, "crc32c": "00000000"})
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as caught:
        verify(published.url)
    assert caught.value.problem == "manifest: file path '../../../etc/hostname' leaves the model directory"
    doc["files"][-1] = {"path": "x", "size": -1, "crc32c": "zz"}
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as caught:
        verify(published.url)
    assert caught.value.problem.startswith(f"manifest: files.{len(doc['files']) - 1}.")
