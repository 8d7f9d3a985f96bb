"""Small models and an in-memory object store that records its writes, for the storage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fsspec.implementations.memory import MemoryFileSystem

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model


def make_model(root: Path, seed: int) -> str:
    """A 4 -> 3 softmax layer with weights from ``seed``, written at ``root/model-<seed>``."""
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(root / f"model-{seed}"), [layer])


class RecordingMemory(MemoryFileSystem):
    """An in-memory object store that records the order in which files are written."""

    root_marker = "/"
    cachable = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[str] = []

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode or "x" in mode:
            self.written.append(self._strip_protocol(path))
        return super()._open(path, mode, *args, **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.written.append(self._strip_protocol(path2))
        super().cp_file(path1, path2, **kwargs)
