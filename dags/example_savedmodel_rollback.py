"""
### Roll back (or move) a serving label

Trigger with the form: the model's `stable` label (or any label) goes back to the previous
complete version, or to the version you enter. The change is one atomic update of TensorFlow
Serving's model config file; a version that is not complete under the base path is refused.
"""

from __future__ import annotations

import datetime

from airflow.sdk import Param, dag
from savedmodel_demo_settings import CONN_ID, MODEL_NAME, SERVING_CONFIG

from airflow_savedmodel.operators.savedmodel import SavedModelServingLabelOperator


@dag(
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    params={
        "model_name": Param(
            MODEL_NAME, type="string", title="Model", description="Its name in the serving config."
        ),
        "label": Param("stable", type="string", title="Label", description="The label to move."),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description=(
                "Roll back to this version. Empty: the newest complete version below the one the label "
                "names now, so the defaults need two published versions (on a fresh demo: publish "
                "once more, or release a second version, first); with one version there is nothing "
                "to go back to and the run says so, changing nothing."
            ),
        ),
    },
)
def example_savedmodel_rollback() -> None:
    SavedModelServingLabelOperator(
        task_id="rollback",
        serving_config=SERVING_CONFIG,
        model_name="{{ params.model_name }}",
        action="rollback",
        version_label="{{ params.label }}",
        version="{{ params.version if params.version is not none else '' }}",
        savedmodel_conn_id=CONN_ID,
        doc_md="One atomic update of the serving config; refuses versions that are not complete.",
    )


example_savedmodel_rollback()
