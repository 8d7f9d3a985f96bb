"""Publish and retention edge cases on a local disk: a source that changes while it is published,
and retention beside a newer version that is not (yet) complete."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import gc, list_versions, publish


def make_model(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return Path(export_dense_model(str(root / f"model-{seed}"), [layer]))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_source_changed_during_the_publish_is_refused_before_it_becomes_a_version(tmp_path: Path) -> None:
    src = make_model(tmp_path, 1)
    base = tmp_path / "serving"
    publish(str(src), str(base))
    # Same files and sizes, other bytes: the content is compared by checksum before copying...
    flip_last_byte(src / "variables" / "variables.data-00000-of-00001")
    changed = False
    lock = threading.Lock()  # progress arrives from the copy's worker threads

    def change_source_midway(progress: object) -> None:
        nonlocal changed
        with lock:
            if not changed:  # ...and saved_model.pb, copied last, changes after that comparison
                flip_last_byte(src / "saved_model.pb")
                changed = True

    with pytest.raises(StorageError, match=r"model-1: the source changed while it was being published"):
        publish(str(src), str(base), progress=change_source_midway)
    assert sorted(
        p.name for p in base.iterdir() if p.name not in (".savedmodel-catalog", ".savedmodel-index")
    ) == ["1"]


def test_retention_keeps_the_newest_complete_version_behind_newer_unverified_ones(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    for seed in (1, 2):
        publish(str(make_model(tmp_path, seed)), str(base))
    # version 3: a SavedModel without this tool's manifest (another tool, or a plain-mode
    # publish on an object store between saved_model.pb and the manifest)
    shutil.copytree(base / "2", base / "3")
    (base / "3" / "assets.extra" / "airflow_savedmodel_manifest.json").unlink()
    assert [i.state for i in list_versions(str(base))] == ["complete", "complete", "unverified"]
    result = gc(str(base), keep_last=1)
    assert [i.version for i in list_versions(str(base))] == [2, 3]
    assert result.removed == [str(base / "1")]


def test_a_claim_won_after_retention_removed_it_is_not_used_for_an_existing_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publisher A finds version 2 free; before A claims it, B publishes 2 and retention removes
    B's claim. A then wins an empty claim for 2: it must move on to 3, not write into 2."""
    import importlib
    import uuid

    from airflow_savedmodel.storage import leases

    publishing = importlib.import_module("airflow_savedmodel.storage.publish")
    base = f"memory://races-{uuid.uuid4().hex[:8]}/ranker"
    publish(str(make_model(tmp_path, 1)), base)
    real_claim = leases.claim
    raced = []

    def claim_after_b(fs, path, token):  # type: ignore[no-untyped-def]
        if not raced:
            raced.append(True)
            monkeypatch.setattr(publishing.leases, "claim", real_claim)
            b = publish(str(make_model(tmp_path, 2)), base)  # B, start to finish
            assert b.version == 2
            gc(base, keep_last=10)  # retention: version 2 exists, so its claim goes
            monkeypatch.setattr(publishing.leases, "claim", claim_after_b)
        return real_claim(fs, path, token)

    monkeypatch.setattr(publishing.leases, "claim", claim_after_b)
    a = publish(str(make_model(tmp_path, 3)), base)
    versions = {i.version: i for i in list_versions(base)}
    b_content = versions[2].manifest.source if versions[2].manifest else None
    assert raced and a.version == 3 and set(versions) == {1, 2, 3}
    assert all(i.state == "complete" for i in versions.values())
    assert b_content is not None and b_content.endswith("model-2")
