"""
### Publish a model trained outside Airflow, once it is completely written

A training job that runs elsewhere (Vertex AI custom training, a notebook, a Kubernetes job)
writes a SavedModel to an agreed location. This DAG waits for it without holding a worker
slot: the sensor defers to the triggerer, which polls storage until the model is complete
(its manifest matches or, for models written by other tools, it validates: saved_model.pb
parses and every variables shard is there). Then the model is validated for the target
TensorFlow Serving release, stripped of default-valued attrs and published as the next
version, gated through the serving config with the `canary` label; the Asset event makes
`example_savedmodel_serving_mirror` mirror it.
"""

from __future__ import annotations

import datetime

from airflow.sdk import Param, dag
from savedmodel_demo_settings import (
    CLASSIFIER,
    CONN_ID,
    EXPORT_ROOT,
    MODEL_NAME,
    SERVING_BASE,
    SERVING_CONFIG,
    TARGET_TF,
)

from airflow_savedmodel.operators.savedmodel import SavedModelExportOperator
from airflow_savedmodel.sensors.savedmodel import SavedModelSensor


@dag(
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    # Every task resumes idempotently (the sensor pokes before it defers; the export reuses a
    # version holding the same content), so a retry is safe. It covers Airflow's resume race
    # (apache/airflow#72716): a trigger that fires right after the task deferred can have the
    # resumed try failed by the scheduler ("state mismatch"); see docs/troubleshooting.md.
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=10)},
    params={
        "export_url": Param(
            f"{EXPORT_ROOT}/external/model",
            type="string",
            minLength=1,
            title="Where the external job writes the model",
            description="A SavedModel directory: a path, gs://, s3:// or any fsspec URL.",
        ),
    },
)
def example_savedmodel_external_export() -> None:
    wait = SavedModelSensor(
        task_id="wait_for_export",
        model_url="{{ params.export_url }}",
        savedmodel_conn_id=CONN_ID,
        deferrable=True,
        poke_interval=5,
        timeout=6 * 3600,
        doc_md="Deferred to the triggerer until the model at the export URL is complete (gives up after 6 h).",
    )
    publish = SavedModelExportOperator(
        task_id="publish",
        model_url="{{ params.export_url }}",
        base_path=SERVING_BASE,
        target_tf=TARGET_TF,
        serving_config=SERVING_CONFIG,
        model_name=MODEL_NAME,
        version_labels=["canary"],
        source_conn_id=CONN_ID,
        outlets=[CLASSIFIER],
        doc_md="Validate, strip, copy and verify; then name the version in the serving config as `canary`.",
    )
    wait >> publish


example_savedmodel_external_export()
