"""The catalog of complete versions (storage/catalog.py): the state of every version from one
listing and one read, whatever the history; a catalog that is stale, missing, garbled or missing
an entry never hides a complete version nor shows a partial one, and is healed by the next reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import catalog, list_versions, publish
from airflow_savedmodel.storage import manifest as manifests


def make_model(root: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))
    return export_dense_model(str(root / f"model-{seed}"), [layer])


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Six complete versions published with the catalog, and how TF Serving would see them."""
    base = tmp_path / "serving"
    for seed in range(1, 7):
        publish(make_model(tmp_path, seed), str(base))
    return base


def states(base: Path) -> dict[int, str]:
    return {v.version: v.state for v in list_versions(str(base))}


def counted_manifest_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = manifests.read

    def read(fs, path, *args):  # type: ignore[no-untyped-def]
        calls.append(path)
        return real(fs, path, *args)

    monkeypatch.setattr(manifests, "read", read)
    return calls


def test_states_come_from_one_listing_and_the_catalog(history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(catalog.read(resolve(str(history)).fs, str(history))) == {1, 2, 3, 4, 5, 6}
    reads = counted_manifest_reads(monkeypatch)
    assert states(history) == dict.fromkeys(range(1, 7), "complete")
    assert reads == []  # no version's manifest was read
    infos = list_versions(str(history))
    assert all(i.manifest is not None and i.manifest.fingerprint for i in infos)


@pytest.mark.parametrize("damage", ["deleted", "garbled", "other schema", "entry lost", "stale entry"])
def test_a_damaged_catalog_never_changes_the_answer_and_is_healed(
    history: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    expected = dict.fromkeys(range(1, 7), "complete")
    path = history / catalog.CATALOG_PATH
    if damage == "deleted":
        path.unlink()
    elif damage == "garbled":
        path.write_bytes(b'{"schema": "airflow-savedmodel/catalog/v1", "versions": {"1": [')
    elif damage == "other schema":
        path.write_text(json.dumps({"schema": "something/else", "versions": {}}))
    elif damage == "entry lost":  # a concurrent publisher's update overwritten
        doc = json.loads(path.read_text())
        del doc["versions"]["4"]
        path.write_text(json.dumps(doc))
    else:  # version 3 lost a file after the catalog recorded it, version 5 was removed
        (history / "3" / "variables" / "variables.index").unlink()
        shutil.rmtree(history / "5")
        expected[3] = "partial"
        del expected[5]
    assert states(history) == expected
    healed = catalog.read(resolve(str(history)).fs, str(history))
    assert set(healed) == {n for n, s in expected.items() if s == "complete"}
    reads = counted_manifest_reads(monkeypatch)
    assert states(history) == expected
    assert len(reads) == (1 if damage == "stale entry" else 0)  # only the partial one is read again


def test_a_rewritten_manifest_is_read_again(history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version changed and its manifest forged to match (same sizes): the catalog's record of
    the old manifest is not trusted (the manifest object is not the one it saw), so publish's
    content identity sees the forged content, never the catalogued one."""
    import time

    shard = history / "3" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    time.sleep(0.01)
    version = resolve(str(history / "3"))
    forged = manifests.scan(version.fs, version.path)
    manifests.write(version.fs, version.path, forged)
    reads = counted_manifest_reads(monkeypatch)
    (three,) = [v for v in list_versions(str(history)) if v.version == 3]
    assert reads and three.state == "complete" and three.manifest is not None
    assert three.manifest.content_key() == forged.content_key()
    entry = catalog.read(version.fs, str(history))[3]
    assert entry.manifest.content_key() == forged.content_key()  # the catalog learned it


def test_a_changed_file_of_the_same_count_is_caught_by_its_size(history: Path) -> None:
    shard = history / "2" / "variables" / "variables.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes() + b"x")
    assert states(history)[2] == "partial"


def test_versions_published_before_the_catalog_are_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "serving"
    for seed in (1, 2):
        publish(make_model(tmp_path, seed), str(base))
    (base / catalog.CATALOG_PATH).unlink()  # as an older version of this package left them
    (base / "3").mkdir()  # a publish in flight: partial, never catalogued
    assert states(base) == {1: "complete", 2: "complete", 3: "partial"}
    assert set(catalog.read(resolve(str(base)).fs, str(base))) == {1, 2}


def test_a_reader_that_cannot_write_still_gets_the_right_answer(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (history / catalog.CATALOG_PATH).unlink()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only credentials")

    monkeypatch.setattr("airflow_savedmodel.location.write_atomic", refuse)
    assert states(history) == dict.fromkeys(range(1, 7), "complete")
    assert not (history / catalog.CATALOG_PATH).exists()


def test_a_watchers_listing_tells_a_new_version_with_one_read(tmp_path: Path) -> None:
    """The triggers of a base path hand their shared recursive listing to the telling: on a store
    the first telling reads the catalog and the manifest of a version the catalog does not know,
    and lists nothing; each later one trusts the telling before it where the listed files still
    match, so a new version costs the read of its manifest and nothing else, and a version whose
    files changed, or that a listing shows half written, is never told complete."""
    import asyncio

    import fsspec

    from airflow_savedmodel import location
    from airflow_savedmodel.storage.versions import told_from

    fs = fsspec.filesystem("memory")
    base = f"/watch-{tmp_path.name}"
    for seed in (1, 2, 3):
        publish(make_model(tmp_path, seed), f"memory://{base}")
    doc = json.loads(fs.cat_file(f"{base}/{catalog.CATALOG_PATH}"))
    del doc["versions"]["3"]  # version 3 unknown to the catalog: read the old way
    fs.pipe_file(f"{base}/{catalog.CATALOG_PATH}", json.dumps(doc).encode())
    listing = asyncio.run(location.alisting(fs, base))

    calls: list[tuple[str, str]] = []
    watched = ("find", "ls", "info", "cat_file", "exists", "isfile")

    def count() -> None:
        for name in watched:
            real = getattr(fs, name)

            def counted(path: str, *args: object, _real=real, _name=name, **kwargs: object):  # type: ignore[no-untyped-def]
                calls.append((_name, path.removeprefix(base)))
                return _real(path, *args, **kwargs)

            setattr(fs, name, counted)

    def uncount() -> None:
        for name in watched:
            fs.__dict__.pop(name, None)

    def told(told: object) -> list[tuple[int, str]]:
        return [(i.version, i.state) for i in told.versions]  # type: ignore[attr-defined]

    count()
    try:
        first = told_from(fs, base, listing)
        assert told(first) == [(1, "complete"), (2, "complete"), (3, "complete")]
        assert [c for c in calls if c[0] != "cat_file"] == []
        assert [p for _, p in calls] == [f"/{catalog.CATALOG_PATH}", f"/3/{manifests.MANIFEST_PATH}"]
        assert set(first.entries) == {1, 2, 3}

        uncount()
        publish(make_model(tmp_path, 4), f"memory://{base}")
        newer = asyncio.run(location.alisting(fs, base))
        count()
        calls.clear()
        second = told_from(fs, base, newer, first)
        assert told(second)[-1] == (4, "complete")
        assert calls == [("cat_file", f"/4/{manifests.MANIFEST_PATH}")]  # not the catalog again

        # A listing made before version 3's last file arrived never shows it complete, with or
        # without the telling before it.
        older = location.Listing(
            {p: i for p, i in listing.infos.items() if not p.endswith("variables.index") or "/3/" not in p}
        )
        assert older != listing
        for before in (None, second):
            (three,) = [i for i in told_from(fs, base, older, before).versions if i.version == 3]
            assert three.state == "partial" and three.problems == ["variables/variables.index: missing"]
        # Nor one whose file changed size after the telling before (its manifest is read again).
        changed = {
            p: ({**i, "size": int(i["size"]) + 1} if p.endswith("/2/variables/variables.index") else i)
            for p, i in newer.infos.items()
        }
        (two,) = [
            i for i in told_from(fs, base, location.Listing(changed), second).versions if i.version == 2
        ]
        assert two.state == "partial" and two.problems and "variables/variables.index" in two.problems[0]
    finally:
        uncount()
        fs.rm(base, recursive=True)
