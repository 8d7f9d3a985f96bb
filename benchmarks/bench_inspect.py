"""`savedmodel inspect` in a fresh process against TensorFlow's `saved_model_cli show --all`, same Keras model."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, QUIET, Row, median_time, run_process


def _keras_model(out: Path) -> None:
    code = (
        "import keras\n"
        "m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(256, activation='relu'),"
        " keras.layers.Dense(256, activation='relu'), keras.layers.Dense(10, activation='softmax')])\n"
        f"m.export({str(out)!r}, verbose=False)\n"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=QUIET)


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "keras"
        _keras_model(model)
        ours = median_time(lambda: run_process([str(BIN / "savedmodel"), "inspect", str(model)]))
        theirs = median_time(
            lambda: run_process([str(BIN / "saved_model_cli"), "show", "--all", "--dir", str(model)])
        )
    return [Row("inspect a Keras export (fresh process)", ours, theirs, "s", "saved_model_cli show --all")]
