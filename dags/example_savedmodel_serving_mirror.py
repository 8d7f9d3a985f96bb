"""
### Serving side: mirror each new version, keep the last few

Scheduled on the classifier's Asset: every time the training DAG publishes a version, this
DAG copies that version (verified, atomically, keeping its version number) to a second
filesystem and applies retention to both base paths; versions the serving config names or
labels are never removed.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import dag, task
from savedmodel_demo_settings import (
    CLASSIFIER,
    CONN_ID,
    MIRROR_BASE,
    MIRROR_CONN_ID,
    SERVING_BASE,
    SERVING_CONFIG,
)

from airflow_savedmodel.operators.savedmodel import SavedModelPublishOperator, SavedModelRetentionOperator


@dag(
    schedule=[CLASSIFIER],
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
)
def example_savedmodel_serving_mirror() -> None:
    @task
    def new_version(triggering_asset_events: Any = None) -> str:
        """The version the triggering event announced (a publish elsewhere, e.g. a manual publish to
        another base path, is not the classifier's); else the newest complete one."""
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        for event in reversed(list((triggering_asset_events or {}).get(CLASSIFIER, []))):
            uri = str(event.extra.get("uri") or "")
            if uri.rstrip("/").rsplit("/", 1)[0] == SERVING_BASE.rstrip("/"):
                return uri
            print(f"skipping an event for {uri or 'no version'}: not under {SERVING_BASE}")
        newest = SavedModelHook(CONN_ID).newer_version(SERVING_BASE, None)
        if newest is None:
            raise RuntimeError(f"no complete version under {SERVING_BASE}")
        return str(newest["url"])

    mirror = SavedModelPublishOperator(
        task_id="mirror",
        src=new_version(),
        base_path=MIRROR_BASE,
        version="same",
        source_conn_id=CONN_ID,
        dest_conn_id=MIRROR_CONN_ID,
        doc_md="Copy the announced version to the mirror, verified, under the same version number.",
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
