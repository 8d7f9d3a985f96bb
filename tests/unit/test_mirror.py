"""Mirroring a base path: every complete source version the mirror lacks, under its own number,
whatever order its announcements came in; partial source versions are left for later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import list_versions, publish, verify
from airflow_savedmodel.storage.mirror import mirror


def make_model(root: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(root / f"model-{seed}"), [layer])


def complete(base: Path) -> list[int]:
    return [v.version for v in list_versions(str(base)) if v.state == "complete"]


@pytest.mark.parametrize("dst_kind", ["local", "memory"])
def test_the_mirror_gets_every_complete_version_it_lacks_and_only_those(
    tmp_path: Path, dst_kind: str
) -> None:
    src = tmp_path / "serving"
    for seed in range(1, 5):
        publish(make_model(tmp_path, seed), str(src))
    (src / "5").mkdir()  # a publish in flight (or dead): not complete, not mirrored
    dst_url = str(tmp_path / "mirror") if dst_kind == "local" else f"memory://mirror-{tmp_path.name}"
    publish(str(src / "2"), dst_url, version=2)  # the mirror already holds 2
    result = mirror(resolve(str(src)), resolve(dst_url))
    assert [r.version for r in result.mirrored] == [1, 3, 4]
    assert result.present == [2] and result.skipped == {5: "partial"}
    assert [v.version for v in list_versions(dst_url) if v.state == "complete"] == [1, 2, 3, 4]
    for number in (1, 3, 4):
        assert verify(f"{dst_url}/{number}").ok
    again = mirror(resolve(str(src)), resolve(dst_url))  # nothing left to do
    assert again.mirrored == [] and again.present == [1, 2, 3, 4]


def test_newest_only_mirrors_the_newest_complete_version(tmp_path: Path) -> None:
    src, dst = tmp_path / "serving", tmp_path / "mirror"
    for seed in range(1, 4):
        publish(make_model(tmp_path, seed), str(src))
    result = mirror(resolve(str(src)), resolve(str(dst)), newest_only=True)
    assert [r.version for r in result.mirrored] == [3] and complete(dst) == [3]


def test_only_the_versions_named_are_mirrored(tmp_path: Path) -> None:
    """What a validation step passed, not what completed after it looked."""
    from airflow_savedmodel.operators.savedmodel import _version_numbers

    src, dst = tmp_path / "serving", tmp_path / "mirror"
    for seed in range(1, 4):
        publish(make_model(tmp_path, seed), str(src))
    assert mirror(resolve(str(src)), resolve(str(dst)), versions=[]).mirrored == []
    result = mirror(resolve(str(src)), resolve(str(dst)), versions=[1, 3])
    assert [r.version for r in result.mirrored] == [1, 3] and complete(dst) == [1, 3]
    # As the operator renders it from a template or takes it from XCom.
    assert _version_numbers("8,9") == _version_numbers("[8, 9]") == _version_numbers([8, 9]) == [8, 9]
    assert _version_numbers("") == [] and _version_numbers(None) is None
    with pytest.raises(ValueError, match="versions must be version numbers, got 'latest'"):
        _version_numbers("latest")


def test_a_version_that_cannot_be_mirrored_is_named_and_does_not_stop_the_others(tmp_path: Path) -> None:
    src, dst = tmp_path / "serving", tmp_path / "mirror"
    for seed in range(1, 4):
        publish(make_model(tmp_path, seed), str(src))
    (dst / "2").mkdir(parents=True)  # debris where version 2 would go
    with pytest.raises(StorageError, match=r"1 version\(s\) not mirrored: .*/mirror/2: version exists"):
        mirror(resolve(str(src)), resolve(str(dst)))
    assert complete(dst) == [1, 3]


@pytest.mark.parametrize("dst_kind", ["local", "memory"])
def test_two_mirror_runs_racing_for_the_same_versions_both_succeed(tmp_path: Path, dst_kind: str) -> None:
    """Two runs (a burst of Asset events) see the same versions missing; the one that loses the
    race for a number finds the version complete and counts it as present, not as a failure."""
    src = tmp_path / "serving"
    for seed in range(1, 3):
        publish(make_model(tmp_path, seed), str(src))
    dst_url = str(tmp_path / "mirror") if dst_kind == "local" else f"memory://race-{tmp_path.name}"
    other: list[object] = []

    def meanwhile(version: int) -> Any:
        def progress(_: Any) -> None:  # while this run copies version 1, the other mirrors all
            if version == 1 and not other:
                other.append(mirror(resolve(str(src)), resolve(dst_url)))

        return progress

    result = mirror(resolve(str(src)), resolve(dst_url), progress_for=meanwhile)
    assert [r.version for r in other[0].mirrored] == [1, 2]  # type: ignore[attr-defined]
    assert result.mirrored == [] and result.present == [1, 2]
    assert [v.version for v in list_versions(dst_url) if v.state == "complete"] == [1, 2]
