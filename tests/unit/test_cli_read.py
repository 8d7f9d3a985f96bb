"""`savedmodel inspect` and `savedmodel variables` as a user runs them: a fresh process, real models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_savedmodel", *args], capture_output=True, text=True)


def test_inspect_text_reads_like_saved_model_cli(zoo: dict[str, Path]) -> None:
    result = run("inspect", str(zoo["tf1_builder"]))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MetaGraphDef with tag-set: 'gpu, serve' contains the following SignatureDefs:" in out
    assert "signature_def['classify']:" in out
    assert (
        "    inputs['x'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 3)\n        name: x:0"
        in out
    )
    assert "Method name is: tensorflow/serving/regress" in out
    assert "dense/kernel" in out and "Asset files: labels.txt, vocab.txt" in out
    assert "Fingerprint: none" in out


def test_inspect_json_document(zoo: dict[str, Path]) -> None:
    result = run("inspect", str(zoo["tf2_module"]), "--json", "--tag-set", "serve")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["schema"] == "airflow-savedmodel/inspect/v1"
    assert doc["tag_sets"] == [["serve"]]
    (mg,) = doc["meta_graphs"]
    assert mg["signatures"]["serving_default"]["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "shape": [-1, 3],
        "encoding": "dense",
        "name": "serving_default_x:0",
    }
    assert mg["signatures"]["__saved_model_init_op"]["outputs"]["__saved_model_init_op"]["shape"] is None
    assert mg["stripped_default_attrs"] is True and "MatMul" in mg["ops"]
    tensors = {t["name"]: t for t in doc["variables"]["tensors"]}
    assert tensors["w/.ATTRIBUTES/VARIABLE_VALUE"] == {
        "name": "w/.ATTRIBUTES/VARIABLE_VALUE",
        "dtype": "DT_FLOAT",
        "shape": [3, 2],
        "bytes": 24,
        "shard": 0,
        "partitioned": False,
    }
    assert doc["assets"] == ["vocab.txt"]
    assert set(doc["fingerprint"]) >= {"saved_model_checksum", "checkpoint_hash", "uuid"}


def test_variables_values_json(zoo: dict[str, Path]) -> None:
    result = run(
        "variables",
        str(zoo["all_dtypes"]),
        "v_string/.ATTRIBUTES/VARIABLE_VALUE",
        "v_complex64/.ATTRIBUTES/VARIABLE_VALUE",
        "v_bfloat16/.ATTRIBUTES/VARIABLE_VALUE",
        "--values",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["variables"]}
    strings = rows["v_string/.ATTRIBUTES/VARIABLE_VALUE"]["value"]
    assert strings[0] == "" and strings[1] == "a" and len(strings[2]) == 70000 and strings[4] == "héllo"
    assert "base64" in strings[3]
    assert rows["v_complex64/.ATTRIBUTES/VARIABLE_VALUE"]["value"] == [[1.0, 2.0], [-3.5, -0.5]]
    assert rows["v_bfloat16/.ATTRIBUTES/VARIABLE_VALUE"]["value"][0] == [1.5, -2.25, 3.0]


def test_variables_text_and_partitioned(zoo: dict[str, Path]) -> None:
    result = run("variables", str(zoo["tf1_partitioned"]), "--values")
    assert result.returncode == 0, result.stderr
    assert "  p      DT_FLOAT  (6, 2)  48\n" in result.stdout
    assert "emb/q (DT_INT64, shape (7, 3)):" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "/nonexistent/model"], "/nonexistent/model: does not exist"),
        (["inspect", "/tmp"], "/tmp: not a SavedModel: no saved_model.pb or saved_model.pbtxt"),
        (["variables", "MODEL", "nope"], "no tensor named 'nope'"),
        (["inspect", "MODEL", "--tag-set", "serve,tpu"], "no meta graph with tag set {serve, tpu}"),
    ],
)
def test_errors_exit_1_without_traceback(args: list[str], message: str, zoo: dict[str, Path]) -> None:
    result = run(*[str(zoo["tf2_module"]) if a == "MODEL" else a for a in args])
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run("inspect").returncode == 2
    assert run("frobnicate", "x").returncode == 2
    assert run("inspect", "x", "-o", "novalue").returncode == 2
