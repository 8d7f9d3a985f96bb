"""A fuzzing pass with a fixed seed and a fixed number of cases (the same cases on any machine,
however loaded): mutated TensorFlow-written models give typed errors
or clean reads, never an untyped exception, a time-out or a memory blow-up (`make fuzz` runs
longer, with any seed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]
HERE = Path(__file__).resolve().parent


def test_a_fixed_seed_pass_finds_no_defect(zoo: dict[str, Path], tmp_path: Path) -> None:
    # In a fresh interpreter: the fuzzer forks per case, and this one has TensorFlow loaded.
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--seconds",
            "300",
            "--cases",
            "150",
            "--seed",
            "12",
            "--no-write",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    summary = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "untyped 0, timeout 0, memory 0" in summary
    assert summary.startswith("150 cases"), summary  # the pass really ran, every case
