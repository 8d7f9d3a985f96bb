"""Export within one object store (gs:// -> gs://, strip default attrs, validate, publish): the
one-pass export against the download-rewrite-upload it replaced, through a byte-counting proxy
in front of the GCS server. Model size: BENCH_EXPORT_MB (default 1024)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, gcs_behind_proxy


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run() -> list[Row]:
    from airflow_savedmodel.format import transforms
    from airflow_savedmodel.format.validate import Checks
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import copy, publish
    from airflow_savedmodel.storage.export import export
    from benchmarks.bench_copy import _model

    size_mb = int(os.environ.get("BENCH_EXPORT_MB", "1024"))
    with gcs_behind_proxy(0) as (server, options), tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lean = _model(tmp, size_mb)
        full = transforms.add_default_attrs(str(lean), str(tmp / "full")).dst  # as TF writes it
        shutil.rmtree(lean)
        bucket = server.store.bucket()
        copy(full, f"{bucket}/exports/model", dst_options=server.store.options)
        pb_mb = Path(full, "saved_model.pb").stat().st_size / 2**20
        shutil.rmtree(full)
        src = resolve(f"{bucket}/exports/model", options)

        def through(fn: object) -> tuple[float, float, float]:
            """(seconds, MB through this worker, peak MB of worker disk) for one export."""
            work = tmp / "work"
            work.mkdir()
            before = _proxy_bytes(options["endpoint_url"])
            started = time.perf_counter()
            fn(work)  # type: ignore[operator]
            seconds = time.perf_counter() - started
            moved = (_proxy_bytes(options["endpoint_url"]) - before) / 2**20
            disk = _disk_mb(work)
            shutil.rmtree(work)
            return seconds, moved, disk

        def ours(work: Path) -> None:
            result = export(
                src, resolve(f"{bucket}/ours", options), rewrites=["strip_default_attrs"], checks=Checks()
            )
            assert result.published is not None and result.published.created

        def theirs(work: Path) -> None:
            stripped = transforms.rewrite(
                src.path, str(work / "stripped"), ["strip_default_attrs"], src_fs=src.fs
            )
            from airflow_savedmodel.format.validate import validate

            assert validate(stripped.dst).valid
            publish(stripped.dst, f"{bucket}/theirs", base_options=options)
            # (the old path kept the stripped copy until the task ended)

        t_ours, mb_ours, disk_ours = through(ours)
        t_theirs, mb_theirs, disk_theirs = through(theirs)
    label = f"gs -> gs export with strip, {size_mb} MB model"
    return [
        Row(f"{label}: wall time", t_ours, t_theirs, "s", "download, rewrite on local disk, upload (before)"),
        Row(
            f"{label}: MB through the worker (saved_model.pb is {pb_mb:.2f} MB)",
            max(mb_ours, 1e-3),
            mb_theirs,
            "MB",
            "download, rewrite on local disk, upload (before)",
        ),
        Row(
            f"{label}: worker disk, MB",
            max(disk_ours, 1e-3),
            disk_theirs,
            "MB",
            "download, rewrite on local disk, upload (before)",
        ),
    ]


def _proxy_bytes(endpoint: str) -> int:
    """Object bytes uploaded and downloaded through the proxy (its /__bytes__ counters)."""
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/__bytes__") as answer:
        up, down = map(int, answer.read().split()[:2])
    print(f"proxy counters: uploaded {up:,} downloaded {down:,}", file=sys.stderr)
    return up + down
