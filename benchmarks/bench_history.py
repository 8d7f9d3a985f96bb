"""What a long history costs: publishing a small model, and listing the versions (what every
sensor poke and gc does), under a base path holding 10, 100 and 1,000 versions, on the GCS test
server behind a proxy adding 30 ms per request; the catalog of complete versions against reading
every version's manifest and listing (what the package did before it)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Row, gcs_behind_proxy

LATENCY_SECONDS = 0.03
HISTORY = (10, 100, 1000)


def _small(root: Path, seed: int) -> str:
    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((16, 4)).astype(np.float32), np.zeros(4, np.float32))
    return export_dense_model(str(root / f"small-{seed}"), [layer])


def _fill(fs: Any, base: str, template: dict[str, bytes], upto: int) -> None:
    """Versions 1..upto under ``base``, each a copy of one published version, written straight to
    the server (not through the proxy); one listing of them there writes their catalog."""
    from airflow_savedmodel.storage.versions import versions_of

    fs.pipe({f"{base}/{n}/{rel}": data for n in range(1, upto + 1) for rel, data in template.items()})
    assert [i.state for i in versions_of(fs, base)] == ["complete"] * upto


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

    saved = catalog.read, catalog.write
    catalog.read = lambda *_: {}
    catalog.write = lambda *_: None
    try:
        yield
    finally:
        catalog.read, catalog.write = saved


def _timed(fn: Callable[..., object], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def run() -> list[Row]:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import list_versions, publish

    sizes = [int(x) for x in os.environ.get("BENCH_HISTORY", ",".join(map(str, HISTORY))).split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, gcs_behind_proxy(LATENCY_SECONDS) as (server, options):
        tmp = Path(tmp_name)
        direct = server.store.fs()
        bucket = server.store.bucket()
        template = _template(server, tmp)
        seed = 1
        for kept in sizes:
            base = f"{bucket}/ranker-{kept}"
            _fill(direct, base, template, kept)
            where = resolve(base, options)
            t_list = _timed(list_versions, where)
            with _without_catalog():
                t_list_before = _timed(list_versions, where)
            new, old = _small(tmp, seed), _small(tmp, seed + 1)
            seed += 2
            t_pub = _timed(publish, new, where)
            with _without_catalog():
                t_pub_before = _timed(publish, old, where)
            label = f"{kept} versions kept, {LATENCY_SECONDS * 1000:.0f} ms per request"
            before = "reading every version's manifest and listing (before)"
            rows.append(Row(f"publish a small model to gs, {label}", t_pub, t_pub_before, "s", before))
            rows.append(Row(f"list versions on gs, {label}", t_list, t_list_before, "s", before))
    return rows
