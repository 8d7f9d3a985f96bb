"""What sensors and triggers wait for, and what their pokes say is still missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import numpy as np

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import manifest, publish
from airflow_savedmodel.storage.versions import model_readiness, newer_version_readiness

LOCAL = fsspec.filesystem("file")


def make_model(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return Path(export_dense_model(str(root / f"model-{seed}"), [layer]))


def test_model_readiness_says_what_is_missing(tmp_path: Path) -> None:
    wait = model_readiness(LOCAL, str(tmp_path / "nothing"))
    assert not wait.done and wait.waiting_for == "does not exist"
    (tmp_path / "empty").mkdir()
    wait = model_readiness(LOCAL, str(tmp_path / "empty"))
    assert wait.waiting_for == "not a SavedModel: no saved_model.pb or saved_model.pbtxt in the directory"

    model = make_model(tmp_path)  # written by a tool without a manifest: it must validate
    ready = model_readiness(LOCAL, str(model))
    fingerprint = manifest.fingerprint_of(LOCAL, str(model))  # from its fingerprint.pb
    assert fingerprint and (model / "fingerprint.pb").exists()
    assert ready.done and ready.found == {
        "url": str(model),
        "state": "unverified",
        "fingerprint": fingerprint,
    }
    shard = model / "variables" / "variables.data-00000-of-00001"
    shard.rename(tmp_path / "shard")
    wait = model_readiness(LOCAL, str(model))
    assert not wait.done and wait.waiting_for.startswith("not valid yet: ")
    assert "variables.data-00000-of-00001" in wait.waiting_for

    published = publish(str(make_model(tmp_path, 1)), str(tmp_path / "base"))
    assert model_readiness(LOCAL, published.url).found["state"] == "complete"  # type: ignore[index]
    (Path(published.url) / "variables" / "variables.index").unlink()
    wait = model_readiness(LOCAL, published.url)
    assert wait.waiting_for == "incomplete: variables/variables.index: missing"


def test_version_readiness_names_the_versions_it_saw(tmp_path: Path) -> None:
    base = tmp_path / "base"
    wait = newer_version_readiness(LOCAL, str(base), None)
    assert not wait.done and wait.waiting_for == "no version (newest: none)"
    first = publish(str(make_model(tmp_path, 1)), str(base))
    assert newer_version_readiness(LOCAL, str(base), None).found["version"] == 1  # type: ignore[index]
    wait = newer_version_readiness(LOCAL, str(base), 1)
    assert wait.waiting_for == "no version above 1 (newest: 1)"
    shutil.copytree(first.url, base / "2")
    (base / "2" / "saved_model.pb").unlink()
    wait = newer_version_readiness(LOCAL, str(base), 1)
    assert wait.waiting_for == "version 2 partial (saved_model.pb: missing)"
