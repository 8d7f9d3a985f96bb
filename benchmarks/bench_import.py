"""DAG-parse cost: importing the operator and sensor modules in a fresh process, against the same
modules with the format core, storage and gcsfs imported at module level (what a provider with
top-level heavy imports costs the dag-processor on every parse)."""

from __future__ import annotations

import sys

from benchmarks.common import Row, median_time, run_process

OURS = "import airflow_savedmodel.operators.savedmodel, airflow_savedmodel.sensors.savedmodel"
EAGER = OURS + (
    ", airflow_savedmodel.storage, airflow_savedmodel.format.validate, airflow_savedmodel.format.describe, gcsfs"
)


def run() -> list[Row]:
    ours = median_time(lambda: run_process([sys.executable, "-c", OURS]), repeat=5)
    eager = median_time(lambda: run_process([sys.executable, "-c", EAGER]), repeat=5)
    baseline = median_time(lambda: run_process([sys.executable, "-c", "import airflow.sdk"]), repeat=5)
    return [
        Row(
            f"import operators + sensors (fresh process; `import airflow.sdk` alone: {baseline:.2f} s)",
            ours,
            eager,
            "s",
            "same modules with format, storage and gcsfs imported at top level",
        )
    ]
