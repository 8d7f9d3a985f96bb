"""A fleet run at a platform team's scale: example_savedmodel_fleet publishing 100 small models
into one shared TF Serving model config on the distributed stack (CeleryExecutor, two workers
of 4 slots, PostgreSQL, Redis, as docker-compose.yml configures them), against the obvious
alternative: one process publishing the same models one after another into one config (no
Airflow). Reports wall time, time per model, config-lock waits (p50/p95/max), and what a watcher
reading the config as TF Serving does saw (torn reads, lost entries). BENCH_FLEET sets the count.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, Row

MODELS = int(os.environ.get("BENCH_FLEET") or 100)


def _sequential(exports: Path, serving_root: Path, names: list[str]) -> float:
    from airflow_savedmodel.format.validate import Checks
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.export import export
    from airflow_savedmodel.storage.publish import ServingTarget

    config = resolve(str(serving_root / "models.config"))
    started = time.monotonic()
    for name in names:  # what each mapped task does: strip, validate as the DAG does, gated publish
        export(
            resolve(str(exports / name)),
            resolve(str(serving_root / name)),
            rewrites=["strip_default_attrs"],
            checks=Checks(deep=True, target_tf="2.18"),
            serving=ServingTarget(config, name),
        )
    return time.monotonic() - started


def run() -> list[Row]:
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    from integration.distributed import celery_stack, describe, run_fleet, write_models
    from integration.servers import GcsServer

    server = GcsServer()
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            root = Path(tmp_name)
            with celery_stack(server.store, root) as stack:
                fleet = run_fleet(stack, root, MODELS)
            print(describe(fleet), file=sys.stderr)
            alone = root / "alone"
            names = write_models(alone / "exports", MODELS)
            t_alone = _sequential(alone / "exports", alone / "serving", names)
    finally:
        server.stop()
    waits = fleet.lock_waits
    label = f"{MODELS} small models into one model config"
    alternative = "one process publishing them one after another (no Airflow)"
    return [
        Row(
            f"fleet DAG on Celery (2 workers x 4), {label}, wall time",
            fleet.seconds,
            t_alone,
            "s",
            alternative,
            note=(
                f"config lock waits p50 {waits['p50']:.3f} s, p95 {waits['p95']:.3f} s, max {waits['max']:.3f} s; "
                f"watcher: {fleet.watcher.reads} reads, {len(fleet.watcher.torn)} torn, "
                f"{len(fleet.watcher.lost)} entries lost"
            ),
        )
    ]
