"""
### Serving side: mirror each new version, keep the last few

Scheduled on the classifier's Asset: every time a version is published there, this DAG copies
every complete version the mirror lacks (verified, atomically, keeping their version numbers)
to a second filesystem and applies retention to both base paths; versions the serving config
names or labels are never removed. What to copy comes from the two listings, not from the
events, which Airflow may hand over batched and in any order. The DAG starts unpaused.
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag
from savedmodel_demo_settings import (
    CLASSIFIER,
    CONN_ID,
    MIRROR_BASE,
    MIRROR_CONN_ID,
    SERVING_BASE,
    SERVING_CONFIG,
)

from airflow_savedmodel.operators.savedmodel import SavedModelMirrorOperator, SavedModelRetentionOperator


@dag(
    schedule=[CLASSIFIER],
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    # Unpaused from the start: a paused consumer would only see the events queued while it
    # waited once someone unpaused it.
    is_paused_upon_creation=False,
    # One run at a time: each catches up on every version, so a burst of events needs no
    # parallel runs racing to write the same version numbers.
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=10)},  # every task is idempotent
    tags=["savedmodel", "example"],
    doc_md=__doc__,
)
def example_savedmodel_serving_mirror() -> None:
    mirror = SavedModelMirrorOperator(
        task_id="mirror",
        base_path=SERVING_BASE,
        mirror_base_path=MIRROR_BASE,
        source_conn_id=CONN_ID,
        dest_conn_id=MIRROR_CONN_ID,
        doc_md=(
            "Copy every complete version the mirror lacks, verified, under the same numbers: "
            "whichever events triggered the run, and in whatever order they came."
        ),
    )
    keep_mirror = SavedModelRetentionOperator(
        task_id="retention_mirror",
        base_path=MIRROR_BASE,
        keep_last=3,
        savedmodel_conn_id=MIRROR_CONN_ID,
        doc_md="Keep the mirror's three newest complete versions.",
    )
    keep_serving = SavedModelRetentionOperator(
        task_id="retention_serving",
        base_path=SERVING_BASE,
        keep_last=5,
        serving_config=SERVING_CONFIG,
        savedmodel_conn_id=CONN_ID,
        doc_md="Keep the five newest complete versions, and every version the serving config names.",
    )
    mirror >> [keep_mirror, keep_serving]


example_savedmodel_serving_mirror()
