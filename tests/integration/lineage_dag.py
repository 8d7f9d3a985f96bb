"""Run by test_lineage.py in a fresh Airflow (its own AIRFLOW_HOME, the OpenLineage file
transport from the environment): validate, strip, copy, publish to gs:// and s3://, export.

argv[1]: JSON {"src", "local_base", "gs_base", "s3_base", "stripped"}; connections come from
AIRFLOW_CONN_* variables.
"""

from __future__ import annotations

import datetime
import json
import sys

from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from airflow.sdk import DAG, task

from airflow_savedmodel.operators.savedmodel import (
    SavedModelExportOperator,
    SavedModelPublishOperator,
    SavedModelStripDefaultAttrsOperator,
    SavedModelValidateOperator,
)

where = json.loads(sys.argv[1])
with DAG("lineage", schedule=None, start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)) as dag:
    validate = SavedModelValidateOperator(task_id="validate", model_url=where["src"])
    strip = SavedModelStripDefaultAttrsOperator(
        task_id="strip", model_url=where["src"], destination_url=where["stripped"]
    )
    to_gcs = SavedModelPublishOperator(
        task_id="publish_gcs", model_url=where["stripped"], base_path=where["gs_base"], dest_conn_id="gcs"
    )
    to_s3 = SavedModelPublishOperator(
        task_id="publish_s3",
        model_url=where["stripped"],
        base_path=where["s3_base"],
        version=7,
        dest_conn_id="s3",
    )
    export = SavedModelExportOperator(task_id="export", model_url=where["src"], base_path=where["local_base"])

    @task
    def taskflow_publish() -> int:
        """A TaskFlow task calling the hook itself: its lineage comes from the hook."""
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        return SavedModelHook().publish(where["src"], where["local_base"] + "-taskflow").version

    # First: dag.test() runs every task in this one process, where the hook lineage collector
    # would also hold what the operator tasks' hook calls reported (a worker runs one task).
    taskflow_publish() >> validate >> strip >> [to_gcs, to_s3] >> export

DagBundlesManager().sync_bundles_to_db()
bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
bag.bag_dag(dag)
sync_bag_to_db(bag, "dags-folder", None)
run = dag.test()
print("RUN", run.state)
sys.exit(0 if str(run.state) == "success" else 1)
