"""`savedmodel strip-default-attrs` and `savedmodel clear-devices` from a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_savedmodel.format.model import SavedModel


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", *map(str, args)], capture_output=True, text=True
    )


def test_strip_then_add_back_then_clear(zoo: dict[str, Path], tmp_path: Path) -> None:
    src = zoo["tf1_unstripped"]
    result = run("strip-default-attrs", src, tmp_path / "s")
    assert result.returncode == 0, result.stderr
    assert "meta graph {serve}:" in result.stdout and f"wrote {tmp_path / 's'}" in result.stdout
    with SavedModel.open(str(tmp_path / "s")) as model:
        assert model.meta_graphs[0].proto.meta_info_def.stripped_default_attrs

    result = run("strip-default-attrs", "--add", tmp_path / "s", tmp_path / "a", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changed"] > 0 and doc["meta_graphs"][0]["tags"] == ["serve"]
    with SavedModel.open(str(tmp_path / "a")) as added, SavedModel.open(str(src)) as original:
        assert {n.name: set(n.attr) for n in added.meta_graphs[0].proto.graph_def.node} == {
            n.name: set(n.attr) for n in original.meta_graphs[0].proto.graph_def.node
        }

    result = run("clear-devices", src, tmp_path / "c")
    assert result.returncode == 0, result.stderr
    with SavedModel.open(str(tmp_path / "c")) as model:
        assert not any(n.device for n in model.meta_graphs[0].proto.graph_def.node)


def test_destination_must_not_exist_unless_overwrite(zoo: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("x")
    result = run("clear-devices", zoo["tf2_module"], tmp_path / "d")
    assert result.returncode == 1
    assert "destination exists (replace it with --overwrite, overwrite=True)" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "d" / "old").exists()
    result = run("clear-devices", zoo["tf2_module"], tmp_path / "d", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "d" / "old").exists() and (tmp_path / "d" / "saved_model.pb").exists()


def test_same_source_and_destination_is_refused(zoo: dict[str, Path]) -> None:
    result = run("strip-default-attrs", zoo["tf2_module"], zoo["tf2_module"], "--overwrite")
    assert result.returncode == 1 and "destination is the source" in result.stderr


def test_progress_to_a_pipe_is_whole_lines(tmp_path: Path) -> None:
    """--progress with stderr not a terminal (a CI log): lines, not carriage-return updates."""
    import numpy as np

    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    rng = np.random.default_rng(0)
    src = export_dense_model(
        str(tmp_path / "m"),
        [DenseLayer(rng.standard_normal((64, 64)).astype(np.float32), np.zeros(64, np.float32))],
    )
    result = run("copy", src, tmp_path / "copied", "--progress")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("100%") and all(line.endswith("files") for line in lines), lines
