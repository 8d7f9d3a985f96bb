"""Publish order, retention and leases at their edges, each named after what it guards:
saved_model.pb lands last; keep-last never trades a complete version for a dead publisher's
partial one; leases and locks are judged by the store's clock, not by two machines' clocks;
stray files and entries named like versions end cleanly."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import gc, leases, list_versions, manifest, model_config, publish

from stores import RecordingMemory, make_model


def test_a_plain_publish_on_an_object_store_writes_saved_model_pb_last(tmp_path: Path) -> None:
    fs = RecordingMemory()
    base = f"/serving-{uuid.uuid4().hex[:8]}"
    published = publish(make_model(tmp_path, 1), base, base_fs=fs)
    prefix = f"{base}/{published.version}/"
    order = [p[len(prefix) :] for p in fs.written if p.startswith(prefix)]
    model_files = [p for p in order if p != manifest.MANIFEST_PATH]
    assert model_files[-1] == "saved_model.pb", order
    assert model_files[-2] == "fingerprint.pb", order
    assert order[-1] == manifest.MANIFEST_PATH, order  # complete only once everything is there


def test_deep_validation_catches_a_corrupted_shard_on_a_non_local_store(tmp_path: Path) -> None:
    base = f"memory://deep-{uuid.uuid4().hex[:8]}"
    published = publish(make_model(tmp_path, 2), base)
    fs, path = resolve(published.url)
    shard = f"{path}/variables/variables.data-00000-of-00001"
    data = bytearray(fs.cat_file(shard))
    data[len(data) // 2] ^= 0x01
    fs.pipe_file(shard, bytes(data))
    report = validate(path, fs=fs, deep=True, required_signatures=())
    assert "variables-checksum-mismatch" in {f.code for f in report.findings}, report.to_text()
    assert not validate(path, fs=fs, deep=False, required_signatures=()).findings  # only deep reads it


def write_lease(base: Path, token: str, *, versions: list[int], seconds: float, age: float = 0.0) -> Path:
    """A lease as a publisher writes it, its file's time set ``age`` seconds into the past."""
    folder = base / leases.LEASES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{token}.json"
    doc = {"token": token, "expires": time.time() + seconds - age, "seconds": seconds, "staging": None}
    doc.update(version=versions[-1] if versions else None, versions=versions)
    path.write_text(json.dumps(doc))
    stamp = time.time() - age
    import os

    os.utime(path, (stamp, stamp))
    return path


def test_keep_last_counts_complete_versions_and_reclaims_a_dead_publishers_partial_one(
    tmp_path: Path,
) -> None:
    """The sequence seen on S3: versions 1-4 complete; version 5 has every file but the
    manifest (its publisher was killed), and its lease expired. keep_last=2 keeps 3 and 4 and
    reclaims 5, instead of keeping 5 and deleting a complete version."""
    base = tmp_path / "serving"
    for seed in range(1, 5):
        publish(make_model(tmp_path, seed), str(base))
    publish(make_model(tmp_path, 5), str(base))
    (base / "5" / manifest.MANIFEST_PATH).unlink()  # killed before the manifest: "unverified"
    assert [v.state for v in list_versions(str(base))][-1] == "unverified"
    write_lease(base, "dead-publisher", versions=[5], seconds=60, age=600)
    result = gc(str(base), keep_last=2)
    assert sorted(int(u.rsplit("/", 1)[1]) for u in result.removed if u.rsplit("/", 1)[1].isdigit()) == [
        1,
        2,
        5,
    ]
    assert [v.version for v in list_versions(str(base))] == [3, 4]


def test_an_unverified_version_from_another_tool_still_counts(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    for seed in range(1, 4):
        publish(make_model(tmp_path, seed), str(base))
    (base / "3" / manifest.MANIFEST_PATH).unlink()  # written by TFX, say: no lease ever named it
    gc(str(base), keep_last=2)
    assert [v.version for v in list_versions(str(base))] == [2, 3]


def test_a_live_lease_keeps_its_version_beside_newer_ones(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    for seed in range(1, 5):
        publish(make_model(tmp_path, seed), str(base))
    write_lease(base, "live-publisher", versions=[2], seconds=120)
    gc(str(base), keep_last=1)
    assert [v.version for v in list_versions(str(base))] == [2, 4]


def test_a_gc_whose_clock_runs_minutes_ahead_reclaims_nothing_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease's age is the store's timestamp against the store's own clock: gc's clock
    running 10 minutes ahead does not make a live publisher look dead."""
    base = tmp_path / "serving"
    for seed in range(1, 4):
        publish(make_model(tmp_path, seed), str(base))
    (base / "3" / manifest.MANIFEST_PATH).unlink()  # in flight: files there, manifest not yet
    write_lease(base, "live-publisher", versions=[3], seconds=120)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 600)
    gc(str(base), keep_last=1)
    assert 3 in [v.version for v in list_versions(str(base))]
    assert (base / leases.LEASES_DIR / "live-publisher.json").exists()


def test_a_publisher_whose_lease_lapsed_names_nothing(tmp_path: Path) -> None:
    lease = leases.Lease(resolve(str(tmp_path)).fs, str(tmp_path / "serving"), seconds=0.2)
    lease.start()
    lease._stop.set()  # renewals stop (the store refuses them, the process stalls)
    time.sleep(0.3)
    with pytest.raises(StorageError, match="lease was not renewed for 0s; stopping before anything is named"):
        lease.set_version(7)
    lease.close()


def test_a_failed_renewal_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs = resolve(str(tmp_path)).fs
    lease = leases.Lease(fs, str(tmp_path / "serving"), seconds=0.15)
    lease.start()
    original = leases.write_atomic

    def refuse(*args: Any) -> None:
        raise PermissionError("403 Forbidden")

    try:
        leases.write_atomic = refuse  # type: ignore[assignment]
        with caplog.at_level("WARNING", logger=leases.__name__):
            time.sleep(0.2)
    finally:
        leases.write_atomic = original  # type: ignore[assignment]
        lease.close()
    assert any(
        "renewing the publish lease" in r.getMessage() and "403" in r.getMessage() for r in caplog.records
    )


def test_an_overwrite_publish_records_its_version_in_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "serving"
    publish(make_model(tmp_path, 1), str(base))
    recorded: list[int] = []
    original = leases.Lease.set_version

    def spy(self: leases.Lease, version: int) -> None:
        recorded.append(version)
        original(self, version)

    monkeypatch.setattr(leases.Lease, "set_version", spy)
    publish(make_model(tmp_path, 2), str(base), version=1, overwrite=True)
    assert recorded == [1]


def test_a_lease_write_that_died_half_way_is_reclaimed(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    publish(make_model(tmp_path, 1), str(base))
    folder = base / leases.LEASES_DIR
    folder.mkdir(exist_ok=True)
    old = folder / ".token.json.tmp-1700000000-abcdef012345"
    young = folder / ".other.json.tmp-1700000000-abcdef012346"
    old.write_text("{")
    young.write_text("{")
    import os

    stamp = time.time() - 3600
    os.utime(old, (stamp, stamp))
    gc(str(base), keep_last=1)
    assert not old.exists() and young.exists()  # a write in progress is left alone


def test_a_version_entry_that_is_a_symlink_or_a_file_is_refused_at_once(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    (tmp_path / "elsewhere").mkdir()
    base.mkdir()
    (base / "1").symlink_to(tmp_path / "elsewhere")
    (base / "2").write_text("not a version")
    listed = {v.version: (v.state, v.problems) for v in list_versions(str(base))}
    assert listed == {
        1: ("not-a-directory", ["named like a version but a symlink"]),
        2: ("not-a-directory", ["named like a version but a file"]),
    }
    started = time.monotonic()
    with pytest.raises(
        StorageError, match=r"/serving/1: named like a version but a symlink, not a directory"
    ):
        publish(make_model(tmp_path, 1), str(base))
    assert time.monotonic() - started < 5  # not 100 attempts
    gc(str(base), keep_last=1)
    assert (base / "1").is_symlink() and (base / "2").is_file()  # not ours to remove


def test_a_lock_holder_stalled_past_the_time_to_live_loses_no_update(tmp_path: Path) -> None:
    """Two writers of one serving config on an object store. The first stalls inside its
    change for longer than the lock's time-to-live, renewals included (a frozen process); the
    second breaks the lock and writes. The first finds it lost the lock, applies its change to
    what is there now, and both updates are in the file."""
    root = f"/cfg-{uuid.uuid4().hex[:8]}"
    config = resolve(f"memory://{root}/models.config")
    for name in ("a", "b"):
        base = resolve(f"memory://{root}/{name}")
        publish(make_model(tmp_path, ord(name)), base)
    stalled = threading.Event()
    original_renew = leases._renew_lock

    def frozen_renewals(*args: Any) -> None:  # the stalled holder's renewals stop too
        if threading.current_thread().name.startswith("lock-") and not stalled.is_set():
            return
        original_renew(*args)

    done: list[str] = []
    calls: list[str] = []

    def writer(name: str, stall: float) -> None:
        def change(current: Any) -> None:
            calls.append(name)
            if stall and not stalled.is_set():
                stalled.set()
                time.sleep(stall)
            model = current.model_config_list.config.add()
            model.name, model.base_path = name, f"memory://{root}/{name}"

        model_config.update(config, change)
        done.append(name)

    leases_ttl = leases.LOCK_TTL_SECONDS
    try:
        leases.LOCK_TTL_SECONDS = 0.5
        leases._renew_lock = frozen_renewals  # type: ignore[assignment]
        first = threading.Thread(target=writer, args=("first", 2.0))
        first.start()
        stalled.wait(5)
        writer("second", 0)
        first.join(10)
    finally:
        leases.LOCK_TTL_SECONDS = leases_ttl
        leases._renew_lock = original_renew  # type: ignore[assignment]
    assert sorted(done) == ["first", "second"]
    names = sorted(m.name for m in model_config.read(config).model_config_list.config)
    assert names == ["first", "second"], names
    assert calls.count("first") == 2, calls  # it lost the lock once and applied its change again
