"""
### A new version, published outside Airflow, starts a run

Another tool publishes versions under a base path: TFX's Pusher, a notebook, another team's job,
or `savedmodel publish`. No sensor task waits for them: an **AssetWatcher** in the triggerer
lists the base path (`SavedModelNewVersionTrigger`) and emits an Asset event for every complete
version that appears (never a half-copied one), and this DAG is scheduled on that Asset. Each
run validates every complete version the mirror lacks (deep checks, the target TensorFlow
Serving release), oldest first, and mirrors those it validated, keeping their numbers (a
version that completes between the two tasks is left for the next run, never copied unchecked).

The run works from the listings, not only from its events: Airflow folds events that arrive
together into one run and may hand that run only some of them (seen on the distributed stack:
versions 8 and 9 announced within 2 ms, one run, one event), so a version is never left
unchecked. Settings: `SAVEDMODEL_WATCH_BASE`, `SAVEDMODEL_WATCH_MIRROR`,
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
                base_path=WATCH_BASE, savedmodel_conn_id=CONN_ID, poke_interval=WATCH_SECONDS
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
    def validate_new(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Validate every complete version the mirror lacks, oldest first: the versions this
        run's events announce and any other (Airflow may fold events that arrive together into
        one run, and hand a run only some of them), so nothing announced goes unchecked."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_savedmodel.format.validate import Checks
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        announced = sorted(
            int(event.extra["payload"]["version"])
            for events in (triggering_asset_events or {}).values()
            for event in events
            if "payload" in (event.extra or {})
        )
        print(f"announced to this run: {announced}")
        hook = SavedModelHook(CONN_ID)
        held = {v.version for v in hook.versions(WATCH_MIRROR) if v.state == "complete"}
        checked = []
        for info in hook.versions(WATCH_BASE):
            if info.state != "complete" or info.version in held:
                continue
            report = hook.validate(info.url, Checks(deep=True, target_tf=TARGET_TF))
            print(report.to_text())
            if not report.valid:
                raise AirflowFailException(
                    f"version {info.version} at {info.url} is invalid:\n{report.to_text()}"
                )
            checked.append({"version": info.version, "uri": info.url, "valid": True})
        return checked

    checked = validate_new()
    mirror = SavedModelMirrorOperator(
        task_id="mirror",
        base_path=WATCH_BASE,
        mirror_base_path=WATCH_MIRROR,
        # Only what validate_new passed: a version completed after it looked is the next run's.
        versions="{{ ti.xcom_pull(task_ids='validate_new') | map(attribute='version') | join(',') }}",
        source_conn_id=CONN_ID,
        dest_conn_id=CONN_ID,
        doc_md="Copy the versions validate_new passed, keeping their numbers.",
    )
    checked >> mirror


example_savedmodel_version_watcher()
