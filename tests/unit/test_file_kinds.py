"""Only regular files are read: a directory, FIFO, device or a symlink leaving the model where a
model file should be ends in a typed error naming the file (never a hang, an unbounded read or
a raw IsADirectoryError); symlinks to files inside the model are followed, and copied as content.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import FormatError, SavedModelError
from airflow_savedmodel.format.builder import SavedModelBuilder
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, build_dense_meta_graph
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.storage import copy, publish, verify

pytestmark = pytest.mark.timeout(60)  # a FIFO read would hang: the limit turns that into a failure


def model_with_asset(root: Path) -> Path:
    """A servable dense model whose graph feeds assets/vocab.txt to a string constant."""
    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    meta, values = build_dense_meta_graph([layer])
    node = meta.graph_def.node.add(name="vocab_path", op="Const")
    node.attr["dtype"].type = 7  # DT_STRING
    node.attr["value"].tensor.dtype = 7
    node.attr["value"].tensor.string_val.append(b"vocab.txt")
    source = root / "vocab.txt"
    source.write_text("alpha\nbeta\n")
    builder = SavedModelBuilder(str(root / "model"))
    builder.add_meta_graph_and_variables(
        "serve", meta, variables=values, assets={"vocab_path:0": str(source)}
    )
    return Path(builder.save())


def test_a_symlink_to_a_file_inside_the_model_is_read_and_copied_as_content(tmp_path: Path) -> None:
    model = model_with_asset(tmp_path)
    asset = model / "assets" / "vocab.txt"
    (model / "extra").mkdir()
    asset.rename(model / "extra" / "vocab-real.txt")
    asset.symlink_to("../extra/vocab-real.txt")
    report = validate(str(model), deep=True)
    assert report.valid, report.to_text()
    copied = copy(str(model), str(tmp_path / "copy"))
    target = tmp_path / "copy" / "assets" / "vocab.txt"
    assert not target.is_symlink() and target.read_text() == "alpha\nbeta\n"
    assert "assets/vocab.txt" in {f.path for f in copied.manifest.files}
    published = publish(str(model), str(tmp_path / "serving"))
    assert verify(published.url).ok


@pytest.mark.parametrize("kind", ["outside", "fifo", "dangling"])
def test_an_asset_that_is_not_a_regular_file_inside_the_model_is_refused(tmp_path: Path, kind: str) -> None:
    model = model_with_asset(tmp_path)
    asset = model / "assets" / "vocab.txt"
    asset.unlink()
    if kind == "outside":
        asset.symlink_to(tmp_path / "vocab.txt")
        problem = f"a symlink leading out of the model directory (to {tmp_path / 'vocab.txt'}); refusing to follow it"
    elif kind == "fifo":
        os.mkfifo(asset)
        problem = "is a FIFO (named pipe), not a regular file"
    else:
        asset.symlink_to(model / "nowhere.txt")
        problem = f"a symlink to {model / 'nowhere.txt'}, which does not exist"
    for operation in (
        lambda: copy(str(model), str(tmp_path / "copy")),
        lambda: publish(str(model), str(tmp_path / "serving")),
    ):
        with pytest.raises(FormatError) as caught:
            operation()
        assert (caught.value.path, caught.value.problem) == (str(asset), problem)
    assert not (tmp_path / "copy").exists()
    assert not (tmp_path / "serving").exists()  # a refused source leaves no new base path behind
    report = validate(str(model))
    assert not report.valid and problem in report.to_text()


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("saved_model.pb", "directory"),
        ("fingerprint.pb", "directory"),
        ("fingerprint.pb", "fifo"),
        ("fingerprint.pb", "dev-zero"),
        ("variables/variables.index", "directory"),
        ("variables/variables.data-00000-of-00001", "directory"),
        ("variables/variables.data-00000-of-00001", "fifo"),
    ],
)
def test_model_files_that_are_not_regular_files_give_typed_errors(
    tmp_path: Path, name: str, what: str
) -> None:
    model = model_with_asset(tmp_path)
    target = model / name
    target.unlink()
    if what == "directory":
        target.mkdir()
        problem = "is a directory, not a regular file"
    elif what == "fifo":
        os.mkfifo(target)
        problem = "is a FIFO (named pipe), not a regular file"
    else:
        target.symlink_to("/dev/zero")
        problem = "a symlink leading out of the model directory (to /dev/zero); refusing to follow it"

    def read_everything() -> None:
        with SavedModel.open(str(model)) as opened:
            bundle = opened.variables()
            assert bundle is not None
            for tensor in bundle.names():
                bundle.read(tensor)

    with pytest.raises(SavedModelError) as caught:
        read_everything()
    assert caught.value.problem == problem and caught.value.path == str(target)
    report = validate(str(model), deep=True)
    assert not report.valid and problem in report.to_text()
    shutil.rmtree(tmp_path / "copy", ignore_errors=True)
