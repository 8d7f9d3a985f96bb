"""
### A new version, published outside Airflow, starts a run

Another tool publishes versions under a base path: TFX's Pusher, a notebook, another team's job,
or `savedmodel publish`. No sensor task waits for them: an **AssetWatcher** in the triggerer
lists the base path (`SavedModelNewVersionTrigger`) and emits an Asset event for every complete
version that appears (never a half-copied one), and this DAG is scheduled on that Asset. Each
run validates the versions its events announce (deep checks, the target TensorFlow Serving
release) and mirrors every complete version the mirror lacks, keeping their numbers.

Events that arrive together (several versions at once, a triggerer that was down) are handled
in one run, in version order. Settings: `SAVEDMODEL_WATCH_BASE`, `SAVEDMODEL_WATCH_MIRROR`,
`SAVEDMODEL_WATCH_SECONDS` (`savedmodel_demo_settings.py`).
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task
from savedmodel_demo_settings import CONN_ID, TARGET_TF, WATCH_BASE, WATCH_MIRROR, WATCH_SECONDS

from airflow_savedmodel.assets import asset_uri
from airflow_savedmodel.operators.savedmodel import SavedModelMirrorOperator
from airflow_savedmodel.triggers.savedmodel import SavedModelNewVersionTrigger

PUSHED = Asset(
    uri=asset_uri(WATCH_BASE),
    name="savedmodel_pushed_ranker",
    watchers=[
        AssetWatcher(
            name="savedmodel_pushed_ranker_versions",
            trigger=SavedModelNewVersionTrigger(
                base_path=WATCH_BASE, conn_id=CONN_ID, poke_interval=WATCH_SECONDS
            ),
        )
    ],
)


@dag(
    schedule=[PUSHED],
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=1,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
)
def example_savedmodel_version_watcher() -> None:
    @task
    def validate_announced(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Validate every version the watcher announced to this run, oldest first."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_savedmodel.format.validate import Checks
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        announced = sorted(
            {
                int(event.extra["payload"]["version"]): event.extra["payload"]["uri"]
                for events in (triggering_asset_events or {}).values()
                for event in events
                if "payload" in (event.extra or {})
            }.items()
        )
        hook = SavedModelHook(CONN_ID)
        checked = []
        for version, uri in announced:
            report = hook.validate(uri, Checks(deep=True, target_tf=TARGET_TF))
            print(report.to_text())
            if not report.valid:
                raise AirflowFailException(f"version {version} at {uri} is invalid:\n{report.to_text()}")
            checked.append({"version": version, "uri": uri, "valid": True})
        return checked

    mirror = SavedModelMirrorOperator(
        task_id="mirror",
        base_path=WATCH_BASE,
        mirror_base_path=WATCH_MIRROR,
        source_conn_id=CONN_ID,
        dest_conn_id=CONN_ID,
        doc_md="Copy every complete version the mirror lacks, keeping its number.",
    )
    validate_announced() >> mirror


example_savedmodel_version_watcher()
