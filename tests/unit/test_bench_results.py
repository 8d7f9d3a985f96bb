"""A run of some benchmarks rewrites their rows of RESULTS.md and keeps everything else."""

from __future__ import annotations

from benchmarks.__main__ import WATCHER_SECTION, merged
from benchmarks.common import Row

RESULTS = f"""# Benchmark results

Prose about how the figures were taken.

| benchmark | ratio (>1: ours better) | ours | alternative | alternative |
|---|---|---|---|---|
| a | **2.00x** | 1.000 s | 2.000 s | plain |
| b | **1.00x** | 1.000 s | 1.000 s | plain |

{WATCHER_SECTION}

| kill | served |
|---|---|
| 1 | yes |
"""


def test_a_partial_run_replaces_its_rows_and_keeps_the_rest() -> None:
    out = merged(RESULTS, [Row("b", 1.0, 4.0, "s", "plain", note="why"), Row("c", 1.0, 3.0, "s", "plain")])
    lines = out.splitlines()
    assert "| a | **2.00x** | 1.000 s | 2.000 s | plain |" in lines
    assert "| b | **4.00x** | 1.000 s | 4.000 s | plain |" in lines
    assert not any(line.startswith("| b | **1.00x**") for line in lines)
    assert (
        lines.index("| c | **3.00x** | 1.000 s | 3.000 s | plain |")
        == lines.index("| b | **4.00x** | 1.000 s | 4.000 s | plain |") + 1
    )
    assert lines[lines.index("Notes:") + 1] == "- b: why"
    assert lines.index("Notes:") < lines.index(WATCHER_SECTION)
    assert out.startswith("# Benchmark results\n\nProse about how the figures were taken.\n")
    assert out.endswith(f"{WATCHER_SECTION}\n\n| kill | served |\n|---|---|\n| 1 | yes |\n")
    again = merged(out, [Row("b", 1.0, 5.0, "s", "plain")])  # a row without a note drops the old one
    assert (
        "- b: why" not in again
        and "Notes:" not in again
        and "| b | **5.00x** | 1.000 s | 5.000 s | plain |" in again
    )
