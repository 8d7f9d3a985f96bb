"""The user's path on the distributed engine teams run: the stack docker-compose.yml describes
(CeleryExecutor with two workers, PostgreSQL, Redis, api-server, scheduler, dag-processor,
triggerer) with compose's own Airflow settings, as processes on 127.0.0.1 (no container engine
runs here). Debian's postgresql and redis-server (`make servers`) run as instances of this test.

On it: the training DAG (unpaused at creation, as compose sets: its scheduled run, then one
triggered with the form's defaults), the external-export sensor deferred to the triggerer and
firing, the Asset-scheduled mirror to the GCS bucket, the manual publish form's defaults, a
rollback; then the fleet DAG over 50 models with one Celery worker SIGKILLed while publishes on it
wait, their version copied, to name it in the shared config: every model published exactly once
(those retries reuse their version), no config entry lost, no torn read of the config.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import copy, list_versions, model_config, verify

from integration.airflow_stack import CeleryStack, wait_until
from integration.db_servers import missing_servers
from integration.distributed import FLEET, celery_stack, describe, run_fleet
from integration.servers import Store
from integration.test_user_path import small_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
TRAINING = "example_savedmodel_training_to_serving"
EXTERNAL = "example_savedmodel_external_export"
MIRROR = "example_savedmodel_serving_mirror"
MANUAL = "example_savedmodel_manual_publish"
ROLLBACK = "example_savedmodel_rollback"
WATCHER = "example_savedmodel_version_watcher"
STARTED = "savedmodel_started_in_triggerer"  # a test DAG beside the examples (distributed.py)
FLEET_MODELS = 50


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("celery")


@pytest.fixture(scope="module")
def stack(gcs: Store, root: Path) -> Iterator[CeleryStack]:
    reason = missing_servers()
    if reason:
        pytest.fail(reason)
    with celery_stack(gcs, root) as running:
        yield running


def runs(stack: CeleryStack, dag_id: str) -> list[dict[str, Any]]:
    return list(stack.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=100")["dag_runs"])


def watcher_settled(stack: CeleryStack, versions: list[int]) -> bool:
    """Every one of ``versions`` has its Asset event, no event waits for a run of the watcher
    DAG, and every run of it has finished."""
    (asset,) = [
        a for a in stack.get("/assets?limit=100")["assets"] if a["name"] == "savedmodel_pushed_ranker"
    ]
    events = stack.get(f"/assets/events?asset_id={asset['id']}&limit=100")["asset_events"]
    announced = {((e.get("extra") or {}).get("payload") or {}).get("version") for e in events}
    queued = stack.get(f"/dags/{WATCHER}/assets/queuedEvents")["total_entries"]
    finished = all(r["state"] in ("success", "failed") for r in runs(stack, WATCHER))
    return set(versions) <= announced and queued == 0 and finished


def quoted(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def config_of(root: Path) -> model_config.ServedModel:
    config = model_config.read(resolve(str(root / "models" / "models.config")))
    model = model_config.find(config, "classifier")
    assert model is not None
    return model_config.describe(model)


def test_the_compose_settings_reach_every_service(stack: CeleryStack) -> None:
    """The executor, database and broker are compose's; both workers serve the default queue."""
    assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:airflow@127.0.0.1:"
    )
    assert stack.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@127.0.0.1:")
    health = stack.get("/monitor/health")
    assert health["metadatabase"]["status"] == "healthy", health
    wait_until(
        "the scheduler, triggerer and dag-processor to report healthy",
        lambda: all(
            (stack.get("/monitor/health").get(c) or {}).get("status") == "healthy"
            for c in ("scheduler", "triggerer", "dag_processor")
        ),
        120,
    )


def test_training_runs_on_the_workers_scheduled_and_from_the_form(stack: CeleryStack, root: Path) -> None:
    stack.wait_for_dag(TRAINING)
    # compose unpauses DAGs at creation: the daily schedule starts a run by itself
    scheduled = wait_until("the training DAG's scheduled run", lambda: runs(stack, TRAINING), 120)[0]
    stack.wait_for_run(TRAINING, scheduled["dag_run_id"], timeout=400)
    run_id = stack.trigger(TRAINING, {})  # what the form sends with its defaults
    stack.wait_for_run(TRAINING, run_id, timeout=400)
    published = stack.xcom(TRAINING, run_id, "publish")
    checked = stack.xcom(TRAINING, run_id, "check_served")
    assert checked["version"] == published["version"] and checked["max_abs_diff"] <= 1e-6
    assert published["uri"] == f"{root}/models/classifier/{published['version']}"
    assert config_of(root).labels["stable"] == published["version"]
    assert verify(published["uri"]).ok


def test_the_external_export_sensor_defers_and_fires_and_the_mirror_follows(
    stack: CeleryStack, gcs: Store, root: Path, tmp_path: Path
) -> None:
    stack.unpause(EXTERNAL)
    export = "gs://training/exports/external/model"  # the form's default on compose's settings
    run_id = stack.trigger(EXTERNAL, {})
    wait_until(
        "the sensor to defer to the triggerer",
        lambda: stack.task_state(EXTERNAL, run_id, "wait_for_export") == "deferred",
        180,
    )
    mirrored_before = {r["dag_run_id"] for r in runs(stack, MIRROR)}
    # the external job writes its model to the bucket (saved_model.pb lands last)
    copy(small_model(tmp_path / "external", seed=5), export, dst_options=gcs.options)
    stack.wait_for_run(EXTERNAL, run_id, timeout=240)
    published = stack.xcom(EXTERNAL, run_id, "publish")
    assert config_of(root).labels["canary"] == published["version"]
    log = stack.task_log(EXTERNAL, run_id, "wait_for_export")
    assert f"SavedModel ready at {export}" in log

    def mirror_runs() -> list[dict[str, Any]] | None:
        fresh = [r for r in runs(stack, MIRROR) if r["dag_run_id"] not in mirrored_before]
        return fresh if fresh and all(r["state"] in ("success", "failed") for r in fresh) else None

    done = wait_until("the Asset-scheduled mirror run", mirror_runs, 240, 2)
    assert all(r["state"] == "success" and r["run_type"] == "asset_triggered" for r in done), done
    mirrored = [
        v.version
        for v in list_versions("gs://training/mirror/classifier", gcs.options)
        if v.state == "complete"
    ]
    assert published["version"] in mirrored, mirrored


def test_the_manual_publish_form_and_a_rollback(stack: CeleryStack, root: Path) -> None:
    stack.unpause(MANUAL)
    run_id = stack.trigger(MANUAL, {})
    stack.wait_for_run(MANUAL, run_id, timeout=300)
    published = stack.xcom(MANUAL, run_id, "publish")
    assert published["validation"]["valid"] is True and published["served"]["name"] == "classifier"
    complete = [
        v.version for v in list_versions(str(root / "models" / "classifier")) if v.state == "complete"
    ]
    assert len(complete) >= 2, complete
    stack.unpause(ROLLBACK)
    forward = stack.trigger(ROLLBACK, {"version": complete[-1]})
    stack.wait_for_run(ROLLBACK, forward)
    assert config_of(root).labels["stable"] == complete[-1]
    back = stack.trigger(ROLLBACK, {})
    stack.wait_for_run(ROLLBACK, back)
    assert config_of(root).labels["stable"] == complete[-2]


def test_a_sensor_asked_to_start_in_the_triggerer_never_takes_a_worker_until_the_model_is_there(
    stack: CeleryStack, root: Path, tmp_path: Path
) -> None:
    """start_from_trigger on the distributed stack: the scheduler defers the sensor itself (no
    worker takes it: never queued), the triggerer renders its templated URL, and a worker runs
    it only once the model is there."""
    stack.unpause(STARTED)
    export = root / "started" / "model"
    run_id = stack.trigger(STARTED, {"url": str(export)})
    path = f"/dags/{STARTED}/dagRuns/{quoted(run_id)}/taskInstances/wait"
    ti = wait_until("the sensor to defer", lambda: (t := stack.get(path))["state"] == "deferred" and t, 120)
    assert ti["queued_when"] is None, ti  # no worker took it
    small_model(tmp_path / "writing", seed=9)
    export.parent.mkdir(parents=True)
    os.rename(tmp_path / "writing", export)
    stack.wait_for_run(STARTED, run_id, timeout=180)
    assert stack.xcom(STARTED, run_id, "wait")["url"] == str(export)
    assert "SavedModel ready at" in stack.task_log(STARTED, run_id, "wait")


def test_a_version_the_cli_publishes_outside_airflow_starts_the_watcher_dag(
    stack: CeleryStack, root: Path, tmp_path: Path
) -> None:
    """The AssetWatcher's trigger runs in the triggerer: a version `savedmodel publish` writes
    starts a run of the DAG scheduled on the Asset, which validates it and mirrors it; a
    version directory still being written starts nothing."""
    import subprocess
    import sys

    stack.wait_for_dag(WATCHER)
    base = root / "pushed" / "ranker"
    wait_until(
        "the watcher's first listing in the triggerer",
        lambda: (
            f"Watching {base} every 2.0s: announcing complete versions above 0"
            in stack.log_tail("triggerer", 400)
        ),
        120,
    )
    before = {r["dag_run_id"] for r in runs(stack, WATCHER)}
    (base / "7" / "variables").mkdir(parents=True)  # another tool's version, half written
    (base / "7" / "variables" / "variables.index").write_bytes(b"")
    published = []
    for seed in (31, 32):
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "airflow_savedmodel",
                "publish",
                small_model(tmp_path / f"m{seed}", seed),
                str(base),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        published.append(__import__("json").loads(cli.stdout)["version"])
    assert published == [8, 9], published  # after the numbers another tool took

    def watcher_runs(before: set[str], expected: list[int]) -> list[dict[str, Any]] | None:
        """The runs started since ``before``, once finished and announcing ``expected``."""
        fresh = [r for r in runs(stack, WATCHER) if r["dag_run_id"] not in before]
        done = fresh and all(r["state"] in ("success", "failed") for r in fresh)
        if not done:
            return None
        announced = [
            item["version"]
            for r in fresh
            for item in stack.xcom(WATCHER, r["dag_run_id"], "validate_new") or []
        ]
        assert len(announced) == len(set(announced)), f"a version validated twice: {announced}"
        return fresh if sorted(announced) == expected else None

    fresh = wait_until(
        "the watcher DAG's runs for both versions", lambda: watcher_runs(before, published), 180, 2
    )
    assert all(r["state"] == "success" and r["run_type"] == "asset_triggered" for r in fresh), fresh
    mirrored = [v.version for v in list_versions(str(root / "mirror" / "ranker")) if v.state == "complete"]
    assert mirrored == published, mirrored
    # Airflow may have made a second run for the second event; let it finish before the next
    # version appears, so that version is only ever seen by runs started after it.
    wait_until("every announced version's run to finish", lambda: watcher_settled(stack, published), 120, 2)

    # The triggerer goes down; a version published meanwhile is announced once it is back, and
    # the versions announced before are not announced again (the asset state store remembers).
    stack.kill("triggerer")
    before = {r["dag_run_id"] for r in runs(stack, WATCHER)}
    cli = subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", "publish", small_model(tmp_path / "m33", 33), str(base)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    stack.launch("triggerer", stack.services["triggerer"])
    wait_until(
        "the watcher's run for the version published while the triggerer was down",
        lambda: watcher_runs(before, [10]),
        180,
        2,
    )


def test_a_fleet_survives_a_killed_worker_and_publishes_each_model_once(
    stack: CeleryStack, root: Path
) -> None:
    run = run_fleet(stack, root, FLEET_MODELS, kill="worker-1")
    print(describe(run))
    outcome = run.outcome
    assert len(outcome["published"]) == FLEET_MODELS and not outcome["refused"] and not outcome["failed"]
    # The kill took publishes that had copied their version and waited to name it; each one's
    # retry found its version complete and named that, copying nothing again.
    assert run.killed_waiting >= 2, run.killed_waiting
    retried = {model for model, tries in run.tries.items() if tries >= 2}
    reused = [row["model"] for row in outcome["published"] if row["model"] in retried and not row["created"]]
    assert len(reused) >= run.killed_waiting, (run.tries, outcome["published"])
    serving_root = root / "fleet" / "serving"
    config = model_config.read(resolve(str(serving_root / "models.config")))
    entries = {m.name: model_config.describe(m) for m in config.model_config_list.config}
    assert len(entries) == FLEET_MODELS
    for row in outcome["published"]:
        versions = [v for v in list_versions(str(serving_root / row["model"])) if v.state == "complete"]
        assert [v.version for v in versions] == [row["version"]], (row, versions)  # exactly once
        assert entries[row["model"]].versions == [row["version"]]
    assert run.watcher.reads > 100 and run.watcher.torn == [] and run.watcher.lost == []


def test_no_task_log_has_a_traceback_outside_the_killed_tries(stack: CeleryStack) -> None:
    """Every run of the walk succeeded; the workers' own logs show no task crashed but the ones
    killed with their worker."""
    for dag_id in (TRAINING, EXTERNAL, MIRROR, MANUAL, ROLLBACK, WATCHER, STARTED, FLEET):
        for run in runs(stack, dag_id):
            assert run["state"] == "success", (dag_id, run["dag_run_id"], run["state"])
    survivor = (stack.home / "worker-2.log").read_text(errors="replace")
    assert "Traceback" not in survivor, survivor[-3000:]
    assert os.path.getsize(stack.home / "worker-1.log") > 0
