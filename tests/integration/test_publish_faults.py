"""A publish killed with SIGKILL at many points never leaves an incomplete numeric version on a
POSIX filesystem, never touches the source, and a rerun succeeds. On an object store, where a
version is copied into place object by object, an interrupted version is always reported as
partial (never complete), a rerun publishes a complete one and gc removes the leftover."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import gc, list_versions, publish

from integration.children import run_python_killed_after
from integration.servers import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHILD = """
import json, sys, time
from airflow_savedmodel.storage import publish
src, base, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def tick(progress):
    print("tick", progress.bytes_done, flush=True)
    time.sleep(0.002)

result = publish(src, base, base_options=options, chunk_size=16384, concurrency=1, progress=tick, lease_seconds=1.0)
print("done", result.version, flush=True)
"""


def model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    layers = [
        DenseLayer(rng.standard_normal((256, 512)).astype(np.float32), np.zeros(512, np.float32), "relu"),
        DenseLayer(rng.standard_normal((512, 4)).astype(np.float32), np.zeros(4, np.float32), "softmax"),
    ]
    return Path(export_dense_model(str(tmp_path / "src"), layers))


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def kill_after(src: Path, base: str, options: dict, ticks: int) -> bool:
    """Run a publish in a child process and SIGKILL it after ``ticks`` progress reports; True if it finished first."""
    return run_python_killed_after(CHILD, [str(src), base, json.dumps(options)], ticks)


def test_sigkill_never_leaves_an_incomplete_version_locally(tmp_path: Path) -> None:
    src = model(tmp_path)
    before = tree(src)
    base = tmp_path / "serving"
    points = [1, 2, 3, 5, 8, 13, 21, 30, 38, 39, 40, 10_000]
    finished_runs = 0
    for ticks in points:
        finished_runs += kill_after(src, str(base), {}, ticks)
        for info in list_versions(str(base), deep=True):
            assert info.state == "complete", (ticks, info.to_json())
        numeric = [p.name for p in base.iterdir() if p.name.isdigit()] if base.exists() else []
        assert len(numeric) <= 1  # the same content is never published twice
        assert tree(src) == before
    assert finished_runs >= 1
    result = publish(str(src), str(base))
    assert result.version == 1 and [i.state for i in list_versions(str(base), deep=True)] == ["complete"]
    assert any(p.name.startswith(".savedmodel-staging-") for p in base.iterdir())  # the kills left some
    gc(str(base), keep_last=1, stale_staging=3600)  # their publishers' leases expired: reclaimed now
    assert sorted(
        p.name
        for p in base.iterdir()
        if p.name not in (".savedmodel-leases", ".savedmodel-catalog", ".savedmodel-index")
    ) == ["1"]
    assert list((base / ".savedmodel-leases").iterdir()) == []


def test_sigkill_on_an_object_store_is_reported_and_recovered(gcs: Store, tmp_path: Path) -> None:
    src = model(tmp_path)
    before = tree(src)
    base = gcs.bucket() + "/serving"
    partial_seen = False
    for ticks in (3, 20, 41, 42, 43, 44):
        kill_after(src, base, gcs.options, ticks)
        partial_seen |= any(i.state == "partial" for i in list_versions(base, gcs.options))
        for info in list_versions(base, gcs.options, deep=True):
            assert info.state in ("complete", "partial", "unverified")
            if info.state == "complete":
                assert info.manifest is not None
            if info.state == "unverified":  # killed after saved_model.pb: all TF reads is there
                files = {p.rsplit(f"/{info.version}/", 1)[-1] for p in gcs.fs().find(info.url)}
                assert {f for f in before if f != "fingerprint.pb"} <= files
        assert tree(src) == before
    assert partial_seen, "no kill landed while a version was being copied into place"
    result = publish(str(src), base, base_options=gcs.options)
    states = {i.version: i.state for i in list_versions(base, gcs.options, deep=True)}
    assert states[result.version] == "complete"
    time.sleep(1.1)  # the killed publishers' leases (1 s) expire; until then gc keeps their versions
    gc(base, keep_last=1, stale_staging=3600, storage_options=gcs.options)
    assert [(i.version, i.state) for i in list_versions(base, gcs.options)] == [(result.version, "complete")]


CATALOG_CHILD = """
import os, sys, time
from airflow_savedmodel.storage import catalog, publish
src, base, window = sys.argv[1], sys.argv[2], sys.argv[3]
catalog.COMPACT_AFTER = 2  # this publish's entry is the second: it compacts
real_write, real_replace = catalog._write, os.replace

def stall(what):
    print("window", what, flush=True)
    time.sleep(120)

def write(fs, base_, name, entries):
    if window == "before the entry" and name.startswith("entry-"):
        stall(name)
    written = real_write(fs, base_, name, entries)
    if window == "between the block and the deletes" and name.startswith("block-"):
        stall(name)
    return written

def replace(a, b):
    if window == "inside the entry's write" and "/.savedmodel-catalog/entry-" in str(b):
        stall(b)  # its bytes are on disk under a hidden name, not yet renamed into place
    return real_replace(a, b)

catalog._write = write
os.replace = replace
result = publish(src, base)
print("done", result.version, flush=True)
"""


@pytest.mark.parametrize(
    "window", ["before the entry", "inside the entry's write", "between the block and the deletes"]
)
def test_a_publish_killed_in_the_catalogs_append_or_compaction_is_told_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """SIGKILL aimed at the catalog's windows after the version became visible: before its
    entry is written, with the entry's bytes written but not in place, and in the compaction
    that entry starts, between its block written and the entries deleted. The versions are told
    right at once, a republish of the killed publish's source finds its version (indexed before
    it became visible), and the catalog heals: afterwards no manifest is read to tell them."""
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import catalog
    from airflow_savedmodel.storage import manifest as manifests

    def small(seed: int) -> str:
        rng = np.random.default_rng(seed)
        layer = DenseLayer(rng.standard_normal((8, 4)).astype(np.float32), np.zeros(4, np.float32))
        return export_dense_model(str(tmp_path / f"m{seed}"), [layer])

    base = tmp_path / "serving"
    publish(small(1), str(base))
    killed = small(2)
    assert not run_python_killed_after(CATALOG_CHILD, [killed, str(base), window], 1, counting="window")
    left = sorted(p.name.split("-")[0] for p in (base / catalog.CATALOG_DIR).iterdir())
    assert (
        left
        == {
            "before the entry": ["entry"],  # version 1's only
            "inside the entry's write": [".entry", "entry"],  # the hidden bytes never renamed
            "between the block and the deletes": ["block", "entry", "entry"],
        }[window]
    ), left
    assert [(i.version, i.state) for i in list_versions(str(base), deep=True)] == [
        (1, "complete"),
        (2, "complete"),
    ]
    assert [(i.version, i.state) for i in list_versions(str(base))] == [(1, "complete"), (2, "complete")]
    again = publish(killed, str(base))
    assert (again.version, again.created) == (2, False)
    fs = resolve(str(base)).fs
    catalog.compact(fs, str(base))
    assert set(catalog.read(fs, str(base))) == {1, 2}
    reads: list[str] = []
    real = manifests.read
    monkeypatch.setattr(manifests, "read", lambda fs, path, *a: reads.append(path) or real(fs, path, *a))
    assert [(i.version, i.state) for i in list_versions(str(base))] == [(1, "complete"), (2, "complete")]
    assert reads == []
