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


def part_of(base: Path, number: int) -> Path:
    """The catalog part that holds version ``number`` (each publish appends one)."""
    for part in (base / catalog.CATALOG_DIR).iterdir():
        if str(number) in json.loads(part.read_text())["versions"]:
            return part
    raise AssertionError(f"no part holds version {number}")


@pytest.mark.parametrize("damage", ["deleted", "garbled", "other schema", "entry lost", "stale entry"])
def test_a_damaged_catalog_never_changes_the_answer_and_is_healed(
    history: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    expected = dict.fromkeys(range(1, 7), "complete")
    if damage == "deleted":
        shutil.rmtree(history / catalog.CATALOG_DIR)
    elif damage == "garbled":
        part_of(history, 4).write_bytes(b'{"schema": "airflow-savedmodel/catalog/v1", "versions": {"4": [')
    elif damage == "other schema":
        part_of(history, 4).write_text(json.dumps({"schema": "something/else", "versions": {}}))
    elif damage == "entry lost":  # a publisher killed before it appended
        part_of(history, 4).unlink()
    else:  # version 3 lost a file after the catalog recorded it, version 5 was removed
        (history / "3" / "variables" / "variables.index").unlink()
        shutil.rmtree(history / "5")
        expected[3] = "partial"
        del expected[5]
    assert states(history) == expected
    healed = catalog.read(resolve(str(history)).fs, str(history))
    # Every complete version has its entry again (a stale one stays until a compaction drops a
    # removed version's; it is never trusted: the listing disagrees with it).
    assert {n for n, s in expected.items() if s == "complete"} <= set(healed)
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
    shutil.rmtree(base / catalog.CATALOG_DIR)  # as an older version of this package left them
    (base / "3").mkdir()  # a publish in flight: partial, never catalogued
    assert states(base) == {1: "complete", 2: "complete", 3: "partial"}
    assert set(catalog.read(resolve(str(base)).fs, str(base))) == {1, 2}


def test_the_first_layouts_single_file_is_read_then_folded_away(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base path catalogued by an earlier release of this package (one file of every version)
    is told from that file, and the first compaction folds it into blocks and removes it."""
    fs = resolve(str(history)).fs
    entries = catalog.read(fs, str(history))
    shutil.rmtree(history / catalog.CATALOG_DIR)
    legacy = {str(n): {"stamp": e.stamp, "manifest": e.manifest.to_json()} for n, e in entries.items()}
    (history / catalog.LEGACY_PATH).write_text(json.dumps({"schema": catalog.SCHEMA, "versions": legacy}))
    reads = counted_manifest_reads(monkeypatch)
    assert states(history) == dict.fromkeys(range(1, 7), "complete")
    assert reads == []
    catalog.compact(fs, str(history))
    assert not (history / catalog.LEGACY_PATH).exists()
    assert [p.name.split("-")[:2] for p in (history / catalog.CATALOG_DIR).iterdir()] == [["block", "0"]]
    assert states(history) == dict.fromkeys(range(1, 7), "complete") and reads == []


def test_a_reader_that_cannot_write_still_gets_the_right_answer(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(history / catalog.CATALOG_DIR)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only credentials")

    monkeypatch.setattr("airflow_savedmodel.location.write_atomic", refuse)
    assert states(history) == dict.fromkeys(range(1, 7), "complete")
    assert not (history / catalog.CATALOG_DIR).exists()


def test_a_watchers_listing_tells_a_new_version_with_one_read(tmp_path: Path) -> None:
    """The triggers of a base path hand their shared recursive listing to the telling. With 1,000
    versions kept, the first telling reads the catalog's few parts (its blocks, at once) and the
    manifest of the version the catalog does not know, and lists nothing; each later one trusts
    the telling before it where the listed files still match, so a new version costs the read of
    its manifest and nothing else, and a version whose files changed, or that a listing shows
    half written, is never told complete."""
    import asyncio

    import fsspec

    from airflow_savedmodel import location
    from airflow_savedmodel.storage.versions import told_from, versions_of

    fs = fsspec.filesystem("memory")
    base = f"/watch-{tmp_path.name}"
    publish(make_model(tmp_path, 1), f"memory://{base}")
    template = {p.removeprefix(f"{base}/1/"): fs.cat_file(p) for p in fs.find(f"{base}/1")}
    fs.pipe({f"{base}/{n}/{rel}": data for n in range(2, 1001) for rel, data in template.items()})
    assert len(versions_of(fs, base)) == 1000  # a reader learns them: a block part each 256
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/{catalog.CATALOG_DIR}", False)]
    assert sorted(n.split("-")[1] for n in names if n.startswith("block-")) == ["0", "1", "2", "3"]
    assert len(names) == 5  # and version 1's entry, appended by its publish
    # Version 1001 arrives unknown to the catalog (written by another tool): read the old way.
    fs.pipe({f"{base}/1001/{rel}": data for rel, data in template.items()})
    listing = asyncio.run(location.alisting(fs, base))
    parts = [p.path.removeprefix(base) for p in catalog.parts(fs, base, listing.infos)]

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
        assert told(first) == [(n, "complete") for n in range(1, 1002)]
        assert [c for c in calls if c[0] != "cat_file"] == []
        assert sorted(p for _, p in calls) == sorted([*parts, f"/1001/{manifests.MANIFEST_PATH}"])
        assert len(parts) <= 5 and set(first.entries) == set(range(1, 1002))

        uncount()
        publish(make_model(tmp_path, 4), f"memory://{base}")
        newer = asyncio.run(location.alisting(fs, base))
        count()
        calls.clear()
        second = told_from(fs, base, newer, first)
        assert told(second)[-1] == (1002, "complete")
        assert calls == [("cat_file", f"/1002/{manifests.MANIFEST_PATH}")]  # not the catalog again

        # A listing made before version 1001's last file arrived never shows it complete, with or
        # without the telling before it.
        older = location.Listing(
            {p: i for p, i in listing.infos.items() if not p.endswith("variables.index") or "/1001/" not in p}
        )
        assert older != listing
        for before in (None, second):
            (late,) = [i for i in told_from(fs, base, older, before).versions if i.version == 1001]
            assert late.state == "partial" and late.problems == ["variables/variables.index: missing"]
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


def catalog_names(base: Path) -> list[str]:
    return sorted(p.name for p in (base / catalog.CATALOG_DIR).iterdir())


def test_publishes_append_and_every_32nd_folds_the_entries_into_their_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish writes one small entry and reads no part of the catalog; once COMPACT_AFTER
    entries have gathered the publish that sees them folds them into the blocks their versions
    fall in (rewriting only those), dropping removed versions and blocks none of whose versions
    remain. What the versions are told stays right throughout, with no manifest read."""
    monkeypatch.setattr(catalog, "BLOCK", 4)
    monkeypatch.setattr(catalog, "COMPACT_AFTER", 3)
    base = tmp_path / "serving"
    read_parts: list[list[str]] = []
    real_read = catalog._read_parts

    def spy(fs, listed, strict=False):  # type: ignore[no-untyped-def]
        listed = list(listed)
        read_parts.append([p.path.rsplit("/", 1)[-1] for p in listed])
        return real_read(fs, listed, strict)

    monkeypatch.setattr(catalog, "_read_parts", spy)
    publish(make_model(tmp_path, 1), str(base))
    publish(make_model(tmp_path, 2), str(base))
    assert [n.split("-")[0] for n in catalog_names(base)] == ["entry", "entry"] and read_parts == []
    publish(make_model(tmp_path, 3), str(base))  # the third entry: folded into block 0
    assert [n.split("-")[:2] for n in catalog_names(base)] == [["block", "0"]]
    for seed in range(4, 10):
        publish(make_model(tmp_path, seed), str(base))
    assert [n.split("-")[:2] for n in catalog_names(base)] == [["block", "0"], ["block", "1"], ["block", "2"]]
    read_parts.clear()
    publish(make_model(tmp_path, 10), str(base))  # one entry, versions 8-10 of block 2 unread
    assert read_parts == []
    for n in (1, 2, 3, 4, 5, 6, 7):  # retention took versions 1-7: blocks 0 and 1 are dead
        shutil.rmtree(base / str(n))
    publish(make_model(tmp_path, 11), str(base))
    assert read_parts == []
    publish(make_model(tmp_path, 12), str(base))  # the third entry since: a compaction
    # It read the three entries, then block 2 (10 falls in it), never block 0 or 1.
    assert [[n.split("-")[0] for n in names] for names in read_parts] == [["entry"] * 3, ["block"]]
    assert read_parts[1][0].startswith("block-2-")
    assert [n.split("-")[:2] for n in catalog_names(base)] == [["block", "2"], ["block", "3"]]
    entries = catalog.read(resolve(str(base)).fs, str(base))
    assert set(entries) == {8, 9, 10, 11, 12}
    reads = counted_manifest_reads(monkeypatch)
    assert states(base) == dict.fromkeys(range(8, 13), "complete") and reads == []


def test_two_compactions_at_once_lose_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that read the entries and then stalls (before writing its block) while
    another appends and compacts: each deletes only the parts it folded into a block of its
    own, so every version keeps an entry, and the versions are told without a manifest read."""
    import threading

    monkeypatch.setattr(catalog, "COMPACT_AFTER", 1000)  # the publishes leave compacting to the test
    base = tmp_path / "serving"
    for seed in range(1, 6):
        publish(make_model(tmp_path, seed), str(base))
    fs = resolve(str(base)).fs
    stalled, go_on = threading.Event(), threading.Event()
    real_write = catalog._write

    def write(fs_, base_, name, entries):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "stalling" and name.startswith("block-"):
            stalled.set()
            assert go_on.wait(30)
        return real_write(fs_, base_, name, entries)

    monkeypatch.setattr(catalog, "_write", write)
    first = threading.Thread(target=catalog.compact, args=(fs, str(base)), name="stalling")
    first.start()
    assert stalled.wait(30)
    publish(make_model(tmp_path, 6), str(base))
    catalog.compact(fs, str(base))  # folds 1-6 and deletes the entries the stalled one read
    go_on.set()
    first.join(30)
    assert set(catalog.read(fs, str(base))) == set(range(1, 7))
    catalog.compact(fs, str(base))  # and the next one merges the two block parts into one
    assert [n.split("-")[:2] for n in catalog_names(base)] == [["block", "0"]]
    reads = counted_manifest_reads(monkeypatch)
    assert states(base) == dict.fromkeys(range(1, 7), "complete") and reads == []


def test_a_part_folded_between_the_listing_and_the_read_is_listed_again(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = resolve(str(history)).fs
    real_parts = catalog.parts
    compacted: list[bool] = []

    def parts_then_compact(*args, **kwargs):  # type: ignore[no-untyped-def]
        listed = real_parts(*args, **kwargs)
        if not compacted:
            compacted.append(True)
            monkeypatch.setattr(catalog, "parts", real_parts)
            catalog.compact(fs, str(history))  # the entries just listed are gone now
        return listed

    monkeypatch.setattr(catalog, "parts", parts_then_compact)
    assert set(catalog.read(fs, str(history))) == set(range(1, 7))
    assert compacted


def test_a_compaction_that_cannot_read_a_part_deletes_nothing(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part the store fails to return (not gone: failing) is not taken for garbage: the
    compaction stops and every part stays, to be folded next time."""
    fs = resolve(str(history)).fs
    before = catalog_names(history)
    real_cat = fs.cat

    def failing(paths, **kwargs):  # type: ignore[no-untyped-def]
        got = real_cat(paths, **kwargs)
        got[sorted(got)[0]] = OSError("503 Service Unavailable")
        return got

    monkeypatch.setattr(fs, "cat", failing)
    catalog.compact(fs, str(history))
    monkeypatch.undo()
    assert catalog_names(history) == before and len(before) == 6
    catalog.compact(fs, str(history))
    assert [n.split("-")[:2] for n in catalog_names(history)] == [["block", "0"]]
