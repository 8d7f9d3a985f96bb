"""Deep validation throughput (every crc32c) against a plain sequential read of the same files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import Row, median_time


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
        ours = median_time(lambda: validate(str(model), deep=True))
        # the plain read at its faster block size (small blocks stay in cache; large ones fault pages)
        theirs = min(median_time(lambda c=c: _read_all(model, c)) for c in (1 << 20, 8 << 20))
    return [
        Row(
            f"deep validate, {size_mb:.0f} MB model (throughput)",
            size_mb / ours,
            size_mb / theirs,
            "MB/s",
            "sequential read of the same files, 1 or 8 MB blocks, whichever is faster (the physical limit)",
        )
    ]
