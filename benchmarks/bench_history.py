"""What a long history costs: publishing a small model, and listing the versions (what every
sensor poke and gc does), under a base path holding 10, 100 and 1,000 versions, on local disk and
on the GCS test server behind a proxy adding 30 ms per request. A publish is compared with the
same publish at 10 versions kept in the same run (the goal: 1,000 within 1.3x of 10); a listing
with the catalog against reading every version's manifest and listing (what the package did
before the catalog)."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Row, gcs_behind_proxy

LATENCY_SECONDS = 0.03
HISTORY = (10, 100, 1000)
LOCAL_PUBLISHES = 15
GS_PUBLISHES = 5


def _small(root: Path, seed: int) -> str:
    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((16, 4)).astype(np.float32), np.zeros(4, np.float32))
    return export_dense_model(str(root / f"small-{seed}"), [layer])


def _fill(fs: Any, base: str, template: dict[str, bytes], upto: int) -> None:
    """Versions 1..upto under ``base``, each a copy of one published version, written straight to
    the server (not through the proxy) or the disk; one telling of them writes their catalog and
    indexes their content, as the first publish after an upgrade would."""
    from airflow_savedmodel.storage import content_index
    from airflow_savedmodel.storage.versions import versions_of

    if getattr(fs, "protocol", None) in ("file", ("file", "local")):
        for n in range(1, upto + 1):
            for rel, data in template.items():
                path = Path(base, str(n), rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    else:
        # A few at a time: the test server takes one request at a time behind a backlog of 5,
        # and an upload it drops waits a second for TCP to send it again.
        files = {f"{base}/{n}/{rel}": data for n in range(1, upto + 1) for rel, data in template.items()}
        fs.pipe(files, batch_size=4)
    told = versions_of(fs, base)
    assert [i.state for i in told] == ["complete"] * upto
    content_index.build(fs, base, [(i.version, i.manifest) for i in told if i.manifest is not None])


def _template(server: Any, tmp: Path) -> dict[str, bytes]:
    """One published small version's files (relative path -> bytes), published once on the
    server directly, for _fill to copy as every version of a long history."""
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import publish

    direct, bucket = server.store.fs(), server.store.bucket()
    publish(_small(tmp, 0), resolve(f"{bucket}/seed", server.store.options))
    prefix = f"{bucket.removeprefix('gs://')}/seed/1/"
    return {p.removeprefix(prefix): direct.cat_file(p) for p in direct.find(f"{bucket}/seed/1")}


@contextlib.contextmanager
def _without_catalog() -> Iterator[None]:
    """Versions read as before the catalog: each version's manifest and listing."""
    from airflow_savedmodel.storage import catalog

    saved = catalog.read, catalog.learn
    catalog.read = lambda *_: {}
    catalog.learn = lambda *_: None
    try:
        yield
    finally:
        catalog.read, catalog.learn = saved


def _timed(fn: Callable[..., object], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def _publishes(
    where: Any, tmp: Path, seeds: range, counter: Callable[[], int] | None = None
) -> list[tuple[float, int]]:
    """(seconds, requests) of each publish of a new small model (one per seed) under ``where``;
    requests as ``counter`` counts them (the proxy's), else 0."""
    from airflow_savedmodel.storage import publish

    models = [_small(tmp, seed) for seed in seeds]
    out = []
    for model in models:
        before = counter() if counter else 0
        seconds = _timed(publish, model, where)
        out.append((seconds, (counter() - before) if counter else 0))
    return out


def _proxy_requests(endpoint: str) -> int:
    """Requests the proxy has forwarded (its /__bytes__ counters' third figure)."""
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/__bytes__") as answer:
        return int(answer.read().split()[2])


def _write_seconds(fs: Any, path: str) -> float:
    """Median seconds of a tiny write straight to the test server (no proxy): what the server
    itself takes per write, which grows with the objects it holds."""
    times = [_timed(fs.pipe_file, f"{path}/probe-{i}", b"x") for i in range(5)]
    fs.rm([f"{path}/probe-{i}" for i in range(5)])
    return statistics.median(times)


def _compaction(where: Any) -> float:
    """Seconds of one compaction of the catalog (what every 32nd publish adds)."""
    from airflow_savedmodel.storage import catalog

    return _timed(catalog.compact, where.fs, where.path)


def _against(
    published: dict[int, list[tuple[float, int]]],
    sizes: tuple[int, int],
    name: str,
    unit: str,
    *,
    pick: int,
    note: str = "",
) -> Row:
    """A row of the publishes at ``sizes[0]`` versions against the same publishes at
    ``sizes[1]``: the median of each run's seconds (``pick`` 0) or requests (1)."""
    kept, first = sizes
    ours, theirs = (statistics.median(run[pick] for run in published[n]) for n in (kept, first))
    return Row(name, ours, theirs, unit, f"the same publish with {first} versions kept (same run)", note)


def run() -> list[Row]:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import list_versions

    sizes = [int(x) for x in os.environ.get("BENCH_HISTORY", ",".join(map(str, HISTORY))).split(",")]
    stores = os.environ.get("BENCH_HISTORY_STORES", "local,gs").split(",")
    per_request = f"{LATENCY_SECONDS * 1000:.0f} ms per request"
    rows = []
    seed = 1000
    with tempfile.TemporaryDirectory() as tmp_name, gcs_behind_proxy(LATENCY_SECONDS) as (server, options):
        tmp = Path(tmp_name)
        direct = server.store.fs()
        bucket = server.store.bucket()
        template = _template(server, tmp)

        def proxied() -> int:
            return _proxy_requests(options["endpoint_url"])

        for store in stores:
            published: dict[int, list[tuple[float, int]]] = {}
            compactions: dict[int, float] = {}
            server_write: dict[int, float] = {}
            for kept in sizes:
                counter: Callable[[], int] | None = None
                if store == "local":
                    base = str(tmp / f"local-{kept}")
                    where = resolve(base)
                    _fill(where.fs, base, template, kept)
                    repeat = LOCAL_PUBLISHES
                else:
                    base = f"{bucket}/ranker-{kept}"
                    _fill(direct, base, template, kept)
                    where = resolve(base, options)
                    repeat = GS_PUBLISHES
                    t_list = _timed(list_versions, where)
                    with _without_catalog():
                        t_list_before = _timed(list_versions, where)
                    label = f"{kept} versions kept, {per_request}"
                    before = "reading every version's manifest and listing (before)"
                    rows.append(Row(f"list versions on gs, {label}", t_list, t_list_before, "s", before))
                    server_write[kept] = _write_seconds(direct, f"{bucket}/probe-{kept}")
                    counter = proxied
                print(f"  {store}: {kept} versions in place, publishing", file=sys.stderr, flush=True)
                published[kept] = _publishes(where, tmp, range(seed, seed + repeat), counter)
                seed += repeat
                compactions[kept] = _compaction(where)
                if store == "local":
                    shutil.rmtree(base, ignore_errors=True)
            first = min(sizes)
            where_said = "local disk" if store == "local" else f"gs, {per_request}"
            for kept in sizes:
                if kept == first:
                    continue
                server_note = (
                    f"; the test server itself took {server_write[first] * 1000:.1f} ms per write at "
                    f"{first} versions and {server_write[kept] * 1000:.1f} ms at {kept} (it rewrites its "
                    "index of every object on each write; a real store does not)"
                    if store == "gs"
                    else ""
                )
                rows.append(
                    _against(
                        published,
                        (kept, first),
                        f"publish a small model ({where_said}), {kept} versions kept against {first}",
                        "s",
                        pick=0,
                        note=f"median of {len(published[kept])} publishes; a compaction of the catalog "
                        f"(every 32nd publish) took {compactions[kept]:.3f} s at {kept} versions, "
                        f"{compactions[first]:.3f} s at {first}{server_note}",
                    )
                )
                if store == "gs":
                    rows.append(
                        _against(
                            published,
                            (kept, first),
                            f"requests of a publish to gs, {kept} versions kept against {first}",
                            "requests",
                            pick=1,
                        )
                    )
    return rows
