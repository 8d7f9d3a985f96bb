"""Copy and publish costs: local copy against `cp -r`, a many-file model to the GCS server against
a sequential fsspec put, and peak memory while copying a 1 GB model against reading files whole."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import QUIET, Row, gcs_behind_proxy, interleaved_medians

SIZES_MB = (10, 100, 1024)
LATENCY_SECONDS = 0.03


def _model(root: Path, size_mb: int) -> Path:
    """A servable model whose variables total about ``size_mb`` MB."""
    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    width = 1024
    depth = max(1, round(size_mb * 2**20 / (width * width * 4)))
    rng = np.random.default_rng(0)
    layers = [
        DenseLayer(rng.standard_normal((width, width), np.float32), np.zeros(width, np.float32), "relu")
        for _ in range(depth)
    ]
    return Path(export_dense_model(str(root / f"model-{size_mb}"), layers))


def _peak_rss_mb(code: str) -> float:
    """Peak resident memory of a Python process running ``code``, sampled from /proc every 2 ms.

    (VmHWM and ru_maxrss are unusable here: a child spawned from this large process reports the
    parent's high-water mark.)
    """
    child = subprocess.Popen([sys.executable, "-c", code], env=QUIET, stdout=subprocess.DEVNULL)
    peak = 0
    status = Path(f"/proc/{child.pid}/status")
    while child.poll() is None:
        try:
            rss = next(
                int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS:")
            )
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            break
        peak = max(peak, rss)
        time.sleep(0.002)
    if child.wait() != 0:
        raise RuntimeError(f"benchmark child failed: {code}")
    return peak / 1024


def _local_rows(tmp: Path) -> list[Row]:
    from airflow_savedmodel.storage import copy

    rows = []
    for size in SIZES_MB:
        model = _model(tmp, size)
        counter = iter(range(10**6))

        def ours(model: Path = model, counter: Iterator[int] = counter) -> None:
            copy(str(model), str(tmp / f"ours-{next(counter)}"))

        def theirs(model: Path = model, counter: Iterator[int] = counter) -> None:
            subprocess.run(["cp", "-r", str(model), str(tmp / f"cp-{next(counter)}")], check=True)

        subprocess.run(["cat", *map(str, model.rglob("*.data-*"))], check=True, stdout=subprocess.DEVNULL)
        t_ours, t_cp = interleaved_medians(ours, theirs)
        mb = sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) / 2**20
        rows.append(
            Row(
                f"local copy, {mb:.0f} MB model, verified (throughput)",
                mb / t_ours,
                mb / t_cp,
                "MB/s",
                "cp -r (no verification)",
            )
        )
        if size == max(SIZES_MB):
            script = f"from airflow_savedmodel.storage import copy; copy({str(model)!r}, {str(tmp / 'rss-ours')!r})"
            naive = (
                "from pathlib import Path\n"
                f"src, dst = Path({str(model)!r}), Path({str(tmp / 'rss-naive')!r})\n"
                "for p in src.rglob('*'):\n"
                "    if p.is_file():\n"
                "        t = dst / p.relative_to(src); t.parent.mkdir(parents=True, exist_ok=True)\n"
                "        t.write_bytes(p.read_bytes())\n"
            )
            rows.append(
                Row(
                    f"peak RSS copying a {mb:.0f} MB model",
                    _peak_rss_mb(script),
                    _peak_rss_mb(naive),
                    "MB",
                    "read each file whole, then write it",
                )
            )
            rows.append(_republish_row(tmp, model, size))
        for p in tmp.iterdir():
            if p.name.startswith(("ours-", "cp-", "rss-", "serving", "again")):
                subprocess.run(["rm", "-rf", str(p)], check=True)
    return rows


def _republish_row(tmp: Path, model: Path, size_mb: int) -> Row:
    """A nightly re-export of unchanged weights (only fingerprint.pb's uuid differs) published
    again, against publishing it as a new version (what happens without content identity)."""
    from airflow_savedmodel.storage import publish

    base = tmp / "serving"
    started = time.perf_counter()
    publish(str(model), str(base))
    first = time.perf_counter() - started
    again = _model(tmp / "again", size_mb)
    before = sorted(str(p) for p in base.rglob("*"))
    started = time.perf_counter()
    result = publish(str(again), str(base))
    republish = time.perf_counter() - started
    written = sorted(str(p) for p in base.rglob("*")) != before
    if result.created or written:
        raise RuntimeError("an unchanged model was published again")
    mb = result.manifest.total_bytes / 2**20
    return Row(
        f"republish an unchanged {mb:.0f} MB re-export (0 bytes written)",
        republish,
        first,
        "s",
        "publishing it as a new version (copy + verify)",
    )


GCS_ROUNDS = 5


def _gcs_row(tmp: Path) -> Row:
    """Rounds alternate the two contenders, each into a fresh bucket removed afterwards (the GCS
    test server rewrites its whole object index on every write, so a server that kept every
    round's objects would make whichever runs later slower); the row reports the median of each
    and the spread of the per-round ratio."""
    from airflow_savedmodel.storage import copy

    model = _model(tmp / "gcs", 10)
    assets = model / "assets"
    assets.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(200):
        (assets / f"vocab-{i:03d}.txt").write_bytes(rng.bytes(32 * 1024))
    files = sorted(p for p in model.rglob("*") if p.is_file())
    with gcs_behind_proxy(LATENCY_SECONDS) as (server, options):
        from integration.servers import Store

        store = Store("gs", options)
        fs = store.fs()
        direct = server.store.fs()

        def ours(bucket: str) -> None:
            copy(str(model), f"{bucket}/m", dst_options=store.options, concurrency=16)

        def theirs(bucket: str) -> None:
            target = f"{bucket.split('://')[1]}/m"
            for p in files:
                fs.put_file(str(p), f"{target}/{p.relative_to(model)}")

        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(GCS_ROUNDS):
            for name, fn in (("ours", ours), ("theirs", theirs)):
                bucket = store.bucket()
                started = time.perf_counter()
                fn(bucket)
                times[name].append(time.perf_counter() - started)
                direct.rm(bucket.split("://")[1], recursive=True)
    ratios = sorted(t / o for o, t in zip(times["ours"], times["theirs"], strict=True))
    return Row(
        f"{len(files)}-file model to the GCS server, {LATENCY_SECONDS * 1000:.0f} ms per request (verified, 16 at a time)",
        statistics.median(times["ours"]),
        statistics.median(times["theirs"]),
        "s",
        "sequential fsspec put_file, unverified",
        note=f"ratio per round over {GCS_ROUNDS} rounds: {ratios[0]:.2f}x to {ratios[-1]:.2f}x "
        f"(median {statistics.median(ratios):.2f}x)",
    )


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.monotonic()
        rows = _local_rows(tmp)
        rows.append(_gcs_row(tmp))
        print(f"bench_copy took {time.monotonic() - started:.0f}s", file=sys.stderr)
    return rows
