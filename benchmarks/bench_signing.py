"""What signing costs: a publish with an OMS signature against the same publish without (local:
1 GB in four files, signed per file; 1 GB in one file, signed per shard and whole; gs -> gs
through the latency proxy, where the server copies and the digests take one streamed read),
and verifying a signed 1 GB version against a cold read of its files (evicted from the page
cache before each run, as after a reboot or on a node that never read them)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import Row, gcs_behind_proxy, interleaved_medians

LATENCY_SECONDS = 0.03


def _signer(tmp: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from airflow_savedmodel.signing.keys import Signer, Trust

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Signer(key), Trust.from_pem(pem)


def _plain_read(model: Path) -> None:
    for path in model.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(8 << 20):
                    pass


def _settled_medians(
    ours: Callable[[Path], object], theirs: Callable[[Path], object], tmp: Path, repeat: int = 3
) -> tuple[float, float]:
    """Median times of two publishes run alternately, each into a fresh directory that is removed
    and synced to disk outside the timing: neither pays for the other's dirty pages."""
    a, b = [], []
    for i in range(repeat):
        for fn, times in ((ours, a), (theirs, b)):
            out = tmp / f"run-{i}-{len(times)}-{id(times)}"
            os.sync()
            started = time.perf_counter()
            fn(out)
            times.append(time.perf_counter() - started)
            shutil.rmtree(out)
            os.sync()
    return statistics.median(a), statistics.median(b)


def _four_files(root: Path, size_mb: int) -> Path:
    """A model of ``size_mb`` MB in four variables files (as a sharded checkpoint writes them):
    a small model's protos and index, and four data files of random bytes."""
    from benchmarks.bench_copy import _model

    model = root / f"four-{size_mb}"
    shutil.copytree(_model(root, 1), model)
    for old in (model / "variables").glob("variables.data-*"):
        old.unlink()
    rng = np.random.default_rng(1)
    for i in range(4):
        path = model / "variables" / f"variables.data-{i:05d}-of-00004"
        with open(path, "wb") as f:
            for _ in range(size_mb // 4 // 16):
                f.write(rng.bytes(16 << 20))
    return model


def _evict(model: Path) -> None:
    """Drop the model's files from the page cache (clean pages: synced first), so the next read
    comes from the disk."""
    os.sync()
    for path in model.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _publishes(model: Path, tmp: Path, signer: object, label: str, rows: list[Row]) -> None:
    from airflow_savedmodel.storage import publish

    _plain_read(model)
    t_signed, t_plain = _settled_medians(
        lambda out: publish(str(model), str(out), signer=signer),
        lambda out: publish(str(model), str(out)),
        tmp,
    )
    rows.append(Row(f"local publish, {label}", t_signed, t_plain, "s", "the same publish unsigned"))


def _verify(model: Path, tmp: Path, keys: tuple[object, object], label: str, rows: list[Row]) -> None:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import publish, signed

    signer, trust = keys
    published = publish(str(model), str(tmp / "verified"), signer=signer)
    version = resolve(published.url)
    where = Path(version.path)
    mb = sum(p.stat().st_size for p in where.rglob("*") if p.is_file()) / 2**20

    times: dict[str, list[float]] = {"verify": [], "read": []}
    for _ in range(5):  # alternately, each from a cold page cache (evicted outside the timing)
        for name, fn in (
            ("verify", lambda: signed.require(version, trust)),
            ("read", lambda: _plain_read(where)),
        ):
            _evict(where)
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    t_verify, t_read = statistics.median(times["verify"]), statistics.median(times["read"])
    rows.append(
        Row(
            f"verify a signed {label} (throughput, cold)",
            mb / t_verify,
            mb / t_read,
            "MB/s",
            "a plain read of its files in 8 MB blocks, from the disk",
        )
    )
    shutil.rmtree(tmp / "verified")


def run() -> list[Row]:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.signing.keys import Signer
    from airflow_savedmodel.storage import copy, publish, signed
    from benchmarks.bench_copy import _model

    size_mb = int(os.environ.get("BENCH_SIGNING_MB", "1024"))
    remote_mb = int(os.environ.get("BENCH_SIGNING_REMOTE_MB", "256"))
    shard_mb = int(os.environ.get("BENCH_SIGNING_SHARD_MB", "64"))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        signer, trust = _signer(tmp)
        sharded = Signer(signer.private_key, shard_size=shard_mb << 20)
        four = _four_files(tmp, size_mb)
        _publishes(four, tmp, signer, f"{size_mb} MB in four files, signed (OMS files)", rows)
        _verify(four, tmp, (signer, trust), f"{size_mb} MB version in four files", rows)
        shutil.rmtree(four)
        one = _model(tmp, size_mb)
        _publishes(one, tmp, sharded, f"{size_mb} MB in one file, signed in {shard_mb} MB shards", rows)
        _publishes(one, tmp, signer, f"{size_mb} MB in one file, signed whole (one SHA-256 stream)", rows)
        _verify(one, tmp, (sharded, trust), f"{size_mb} MB version in one file, {shard_mb} MB shards", rows)
        shutil.rmtree(one)

        small = _model(tmp, remote_mb)
        with gcs_behind_proxy(LATENCY_SECONDS) as (server, options):
            bucket = server.store.bucket()
            copy(str(small), f"{bucket}/exports/model", dst_options=server.store.options)
            src = resolve(f"{bucket}/exports/model", options)
            n = iter(range(10**6))

            def gs_signed() -> None:
                publish(src, resolve(f"{bucket}/signed-{next(n)}", options), signer=signer)

            def gs_plain() -> None:
                publish(src, resolve(f"{bucket}/plain-{next(n)}", options))

            g_signed, g_plain = interleaved_medians(gs_signed, gs_plain, repeat=3)
            rmb = sum(p.stat().st_size for p in small.rglob("*") if p.is_file()) / 2**20
            rows.append(
                Row(
                    f"gs -> gs publish, {rmb:.0f} MB model, {LATENCY_SECONDS * 1000:.0f} ms per request, signed",
                    g_signed,
                    g_plain,
                    "s",
                    "the same publish unsigned (server-side copy)",
                )
            )
            remote = resolve(f"{bucket}/signed-0/1", options)

            def read_remote() -> None:
                for path in remote.fs.find(remote.path):
                    with remote.fs.open(path, "rb") as f:
                        while f.read(8 << 20):
                            pass

            v_gs, r_gs = interleaved_medians(lambda: signed.require(remote, trust), read_remote, repeat=3)
            rows.append(
                Row(
                    f"verify a signed {rmb:.0f} MB version on gs, {LATENCY_SECONDS * 1000:.0f} ms per request (throughput)",
                    rmb / v_gs,
                    rmb / r_gs,
                    "MB/s",
                    "a plain read of its files, one after another",
                )
            )
    return rows
