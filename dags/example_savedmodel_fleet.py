"""
### A fleet of models in one run

Every sub-directory of the fleet's export root is one model's newest export (`<root>/<model>/`,
a SavedModel). One mapped task per model validates it (deep checks, default attrs stripped, the
target TensorFlow Serving release) and publishes it as the next version under
`<serving root>/<model>`, gated through the **one** TensorFlow Serving model config file the
whole fleet shares (`<serving root>/models.config`, one entry per model). Writers of that file
queue on its lock, so no entry is ever lost; `max_active_tis_per_dagrun` and the pool bound how
many publish at once.

A model that is refused (invalid) fails its own task, with the validation report in its XCom,
and does not stop the others. The summary lists which models published which version, which
were refused and why, and how long the publishes waited for the config; the run fails when any
model did not publish. A retried publish (a worker lost mid-copy) finds its version already
complete and reuses it: each model is published once per content.

Trigger from the UI: on a fresh machine the export root is empty, and the form's defaults write
a few small sample models there first. Settings: `savedmodel_demo_settings.py` (`SAVEDMODEL_FLEET_*`).
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import Param, dag, task
from savedmodel_demo_settings import (
    CONN_ID,
    FLEET_CONCURRENCY,
    FLEET_EXPORT_ROOT,
    FLEET_POOL,
    FLEET_SERVING_ROOT,
    TARGET_TF,
)

from airflow_savedmodel.operators.savedmodel import SavedModelExportOperator

FLEET_CONFIG = f"{FLEET_SERVING_ROOT}/models.config"


@dag(
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    params={
        "export_root": Param(
            FLEET_EXPORT_ROOT,
            type="string",
            title="Export root",
            description="One sub-directory per model, each a SavedModel; the directory's name is the model's.",
        ),
        "samples": Param(
            3,
            type="integer",
            minimum=0,
            maximum=1000,
            title="Sample models",
            description="When the export root holds no model, write this many small sample classifiers there first.",
        ),
        "fail_on_refused": Param(
            True,
            type="boolean",
            title="Fail the run when a model is refused",
            description="The other models publish either way; this only colours the run.",
        ),
    },
)
def example_savedmodel_fleet() -> None:
    @task
    def find_models(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """The models under the export root (written first when it is empty and samples > 0)."""
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        root = str((params or {}).get("export_root") or FLEET_EXPORT_ROOT).rstrip("/")
        fs, path = SavedModelHook(CONN_ID).filesystem(root)
        names = _model_names(fs, path)
        if not names and int((params or {}).get("samples") or 0):
            _write_samples(fs, path, int((params or {})["samples"]))
            names = _model_names(fs, path)
        print(f"{len(names)} models under {root}")
        return [
            {"model_url": f"{root}/{name}", "base_path": f"{FLEET_SERVING_ROOT}/{name}", "model_name": name}
            for name in names
        ]

    models = find_models()
    publish = SavedModelExportOperator.partial(
        task_id="publish",
        serving_config=FLEET_CONFIG,
        strip_default_attrs=True,
        target_tf=TARGET_TF,
        source_conn_id=CONN_ID,
        retries=2,
        retry_delay=datetime.timedelta(seconds=5),
        max_active_tis_per_dagrun=FLEET_CONCURRENCY,
        pool=FLEET_POOL,
        map_index_template="{{ task.model_name }}",
        doc_md="Validate, copy and verify one model, then name its version in the fleet's model config.",
    ).expand_kwargs(models)

    @task(trigger_rule="all_done")
    def summary(
        models: list[dict[str, str]], params: dict[str, Any] | None = None, ti: Any = None
    ) -> dict[str, Any]:
        """Which models published which version, which were refused and why, config lock waits."""
        published, refused, failed = [], [], []
        for index, model in enumerate(models):
            name = model["model_name"]
            result = ti.xcom_pull(task_ids="publish", map_indexes=index)
            if result:
                published.append(
                    {
                        "model": name,
                        "version": result["version"],
                        "created": result["created"],
                        "seconds": result["seconds"],
                        "config_wait_seconds": result.get("config_wait_seconds", 0.0),
                    }
                )
                continue
            report = ti.xcom_pull(task_ids="publish", key="report", map_indexes=index)
            if report and not report.get("valid", True):
                errors = sorted({f["code"] for f in report["findings"] if f.get("severity") == "error"})
                refused.append({"model": name, "findings": errors})
            else:
                failed.append({"model": name, "reason": "its publish failed before a verdict; see its log"})
        waits = sorted(p["config_wait_seconds"] for p in published)
        outcome = {
            "models": len(models),
            "published": published,
            "refused": refused,
            "failed": failed,
            "config_wait_seconds": _spread(waits),
        }
        for row in published:
            verb = "published" if row["created"] else "already held"
            print(f"{row['model']}: {verb} version {row['version']} ({row['seconds']:.1f} s)")
        for row in refused:
            print(f"{row['model']}: refused ({', '.join(row['findings']) or 'invalid'})")
        for row in failed:
            print(f"{row['model']}: {row['reason']}")
        print(f"config lock waits: {outcome['config_wait_seconds']}")
        ti.xcom_push(key="summary", value=outcome)
        if (refused or failed) and (params or {}).get("fail_on_refused", True):
            from airflow.sdk.exceptions import AirflowFailException

            names = ", ".join(row["model"] for row in [*refused, *failed])
            raise AirflowFailException(
                f"{len(refused) + len(failed)} of {len(models)} models did not publish: {names}"
            )
        return outcome

    summary(models) << publish


def _model_names(fs: Any, path: str) -> list[str]:
    """Sub-directories of ``path`` that hold a saved_model.pb, by name."""
    if not fs.exists(path):
        return []
    found = fs.glob(f"{path.rstrip('/')}/*/saved_model.pb")
    return sorted(str(p).rstrip("/").split("/")[-2] for p in found)


def _write_samples(fs: Any, path: str, count: int) -> None:
    import numpy as np

    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    for index in range(count):
        rng = np.random.default_rng(index)
        layers = [
            DenseLayer(rng.normal(0, 0.5, (4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
        ]
        export_dense_model(f"{path.rstrip('/')}/model-{index:03d}", layers, fs=fs)


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": at(0.5), "p95": at(0.95), "max": round(values[-1], 3)}


example_savedmodel_fleet()
