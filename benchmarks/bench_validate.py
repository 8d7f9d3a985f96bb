"""Deep validation throughput (every crc32c) against a plain sequential read of the same files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import Row, interleaved_medians


def _model(root: Path, width: int = 4096) -> Path:
    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    rng = np.random.default_rng(0)
    layers = [
        DenseLayer(rng.standard_normal((width, width), np.float32), np.zeros(width, np.float32), "relu"),
        DenseLayer(rng.standard_normal((width, width), np.float32), np.zeros(width, np.float32), "relu"),
        DenseLayer(rng.standard_normal((width, 10), np.float32), np.zeros(10, np.float32), "softmax"),
    ]
    return Path(export_dense_model(str(root / "model"), layers))


def _read_all(path: Path, chunk: int = 8 << 20) -> int:
    total = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with file.open("rb") as f:
            while block := f.read(chunk):
                total += len(block)
    return total


def run() -> list[Row]:
    from airflow_savedmodel.format.validate import validate

    with tempfile.TemporaryDirectory() as tmp:
        model = _model(Path(tmp))
        size_mb = _read_all(model) / 2**20  # also warms the page cache for both contenders
        # Run alternately with each baseline, so a busy neighbour on a shared machine weighs on both:
        # a plain read in 8 MB blocks (the baseline the target was set against), and at its
        # fastest block size (small blocks stay in the CPU cache, large fresh ones fault pages).
        check = lambda: validate(str(model), deep=True)  # noqa: E731
        ours, eight = interleaved_medians(check, lambda: _read_all(model, 8 << 20), repeat=9)
        ours_again, one = interleaved_medians(check, lambda: _read_all(model, 1 << 20), repeat=9)
        ours = min(ours, ours_again)
        best = min(eight, one)
    what = f"deep validate, {size_mb:.0f} MB model (throughput)"
    return [
        Row(
            what, size_mb / ours, size_mb / eight, "MB/s", "sequential read of the same files in 8 MB blocks"
        ),
        Row(
            what,
            size_mb / ours,
            size_mb / best,
            "MB/s",
            "sequential read at its fastest block size",
        ),
    ]
