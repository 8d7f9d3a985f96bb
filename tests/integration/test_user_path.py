"""The Airflow user's path, end to end, as a newcomer walks it: `make demo` from the runtime
package alone, then the UI command it prints (``make ui``: Airflow's four services under
``airflow standalone``) from a shell with nothing extra on PATH, and a real headless Chromium.

Log in with the generated password; see only our DAGs; trigger the training DAG from its form
with the defaults; trigger the manual publish DAG from its form with the defaults alone; roll
back from the rollback form; release a version from the canary rollout form against a TF
Serving (the stand-in), deferred while it loads; see a deferrable sensor Deferred and then
completed by the triggerer; save a connection in the form and press its Test button; see the
mirror catch up on events that arrive batched and out of order; see the model, its versions and
its release in the Models view, and open a pre-filled form from it. No task log of the walk has
an ERROR line.
Screenshots: test-artifacts/screenshots/user-path/.
"""

from __future__ import annotations

import json
import os
import random
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import list_versions, manifest, model_config, publish, verify

from integration.airflow_stack import AirflowStack, DemoUI, wait_until
from integration.browser import Browser, missing_browser
from integration.conftest import ui_command

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(1200)]
MANUAL = "example_savedmodel_manual_publish"
MIRROR = "example_savedmodel_serving_mirror"
EXTERNAL = "example_savedmodel_external_export"
TRAINING = "example_savedmodel_training_to_serving"
ROLLBACK = "example_savedmodel_rollback"
CANARY = "example_savedmodel_canary_rollout"
FLEET = "example_savedmodel_fleet"
WATCHER = "example_savedmodel_version_watcher"


def small_model(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(path), [layer])


@pytest.fixture(scope="module")
def stack(demo: tuple[Path, Path, str]) -> Iterator[AirflowStack]:
    airflow = DemoUI(ui_command(demo), demo[1])
    try:
        yield airflow.start()
    except BaseException:
        print(f"---- standalone ----\n{airflow.log_tail('standalone', 80)}")
        raise
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def demo_root(stack: AirflowStack) -> Path:
    return stack.home / "savedmodel-demo"


@pytest.fixture(scope="module")
def browser(stack: AirflowStack) -> Iterator[Browser]:
    from selenium.webdriver.common.by import By

    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    window = Browser("user-path")
    try:
        window.open(stack.url)
        window.find(By.NAME, "username").send_keys("admin")
        window.find(By.NAME, "password").send_keys(stack.password)
        window.shot("login")
        window.find(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_until("the login to finish", lambda: "/auth/login" not in window.driver.current_url, 30, 0.2)
        window.wait_for_text("Dags")
        window.shot("home")
        yield window
    except BaseException:
        window.shot("failure")
        raise
    finally:
        window.quit()


def row_test_button(browser: Browser, connection_id: str) -> Any:
    """The Test button in the connection list's row for ``connection_id``."""
    from selenium.webdriver.common.by import By

    return browser.find(
        By.XPATH,
        f"//tr[.//td[normalize-space()='{connection_id}']]//button[@aria-label='Test Connection']",
    )


def newest_run(stack: AirflowStack, dag_id: str, **match: Any) -> dict[str, Any] | None:
    runs = stack.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
    return next((r for r in runs if all(r.get(k) == v for k, v in match.items())), None)


def trigger_from_the_form(
    stack: AirflowStack, browser: Browser, dag_id: str, **fields: str | bool
) -> dict[str, Any]:
    """Open the DAG's trigger form, type ``fields`` (by Param name; a bool flips the switch to
    that value), press Trigger; the run."""
    from selenium.webdriver.common.by import By

    before = {r["dag_run_id"] for r in stack.get(f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]}
    browser.open(f"{stack.url}/dags/{dag_id}")
    browser.find(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
    browser.wait_for_text("Trigger")
    for name, value in fields.items():
        element = browser.find(By.NAME, f"element_{name}")
        if isinstance(value, bool):
            if element.is_selected() != value:  # the switch's input is hidden: click it as the label does
                browser.driver.execute_script("arguments[0].click()", element)
            wait_until(f"{name} switched {value}", lambda e=element, v=value: e.is_selected() == v, 10, 0.2)
        else:
            browser.type_into(element, value)
    browser.shot(f"{dag_id} form")
    browser.find(By.XPATH, "//*[@role='dialog']//button[normalize-space()='Trigger']").click()

    def new_run() -> dict[str, Any] | None:
        runs = stack.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
        return next((r for r in runs if r["dag_run_id"] not in before and r["run_type"] == "manual"), None)

    return wait_until(f"the run the {dag_id} form triggered", new_run, 60)


# What Airflow's supervisor logs when the scheduler changed a try's state under it: the try
# deferred, its trigger fired at once, and the executor's stale "success" for the deferring
# process reached the scheduler after the resumed try was queued under the same key
# (apache/airflow#72716). The scheduler then fails the running try ("state mismatch" in its
# audit log); the supervisor says so when the task ends, or at its next heartbeat, which kills it.
AIRFLOW_STATE_RACE = (
    "Failed to report terminal task state to supervisor",
    "Server indicated the task shouldn't be running anymore",
)


def failed_by_the_scheduler(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, attempt: int
) -> bool:
    """Whether Airflow's audit log says its scheduler failed this try under a running task."""
    from urllib.parse import urlencode

    query = urlencode(
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "try_number": attempt,
            "event": "state mismatch",
        }
    )
    return bool(stack.get(f"/eventLogs?{query}")["event_logs"])


def log_items(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, attempt: int
) -> list[dict[str, Any]]:
    """A try's log lines as the API serves them; for an earlier try the API cannot find (a try
    Airflow replaced while resuming it from the triggerer has no history row), the log file
    the task wrote under AIRFLOW_HOME/logs, which is what the API would have read."""
    run = urllib.parse.quote(run_id, safe="")
    try:
        reply = stack.get(
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{attempt}?full_content=true"
        )
        return [i for i in reply.get("content", []) if isinstance(i, dict)]
    except AssertionError as exc:
        if "HTTP 404" not in str(exc):
            raise
    path = (
        stack.home
        / "logs"
        / f"dag_id={dag_id}"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
        / f"attempt={attempt}.log"
    )
    print(f"{dag_id}/{run_id}/{task_id}: the API has no log of try {attempt}; read {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def error_lines(stack: AirflowStack, dag_id: str, run_id: str) -> list[str]:
    """Lines at ERROR level in every task log of a run (every try of every task that ran; a
    skipped task, such as the approval a rollout did not ask for, has none), with the exception
    each carries. A try Airflow's scheduler failed under a running task (AIRFLOW_STATE_RACE, and
    a "state mismatch" for that try in Airflow's audit log) is left out when a later try of that
    task succeeded; it is printed, not hidden."""
    tis = stack.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    found = []
    for ti in tis:
        if ti.get("state") == "skipped" and not ti.get("try_number"):
            continue
        tries = max(int(ti.get("try_number") or 1), 1)
        for attempt in range(1, tries + 1):
            items = log_items(stack, dag_id, run_id, ti["task_id"], attempt)
            errors = [
                f"{ti['task_id']}#{attempt}: {i.get('event')} "
                f"{i.get('error_detail') or i.get('exception') or i.get('detail') or ''}".rstrip()
                for i in items
                if str(i.get("level", "")).lower() in ("error", "critical")
            ]
            raced = any(any(m in str(i.get("event")) for m in AIRFLOW_STATE_RACE) for i in items)
            if (
                errors
                and raced
                and attempt < tries
                and ti.get("state") == "success"
                and failed_by_the_scheduler(stack, dag_id, run_id, ti["task_id"], attempt)
            ):
                print(
                    f"{dag_id}/{run_id}: try {attempt} failed by Airflow's scheduler, retried:",
                    *errors,
                    sep="\n  ",
                )
                continue
            found += errors
    return found


WALKED: list[tuple[str, str]] = []  # (dag_id, run_id) of every run the walk made, scanned at its end


def test_make_demo_runs_the_training_dag_from_the_runtime_package_alone(demo: tuple[Path, Path, str]) -> None:
    """`make demo` as a new user runs it: a virtualenv with only the runtime package (no
    TensorFlow, no test tools), the training -> serving DAG on an embedded Airflow, what it
    prints, and the UI command it prints (which the walk below starts)."""
    import re
    import subprocess

    venv, home, out = demo
    assert "DAG run finished: success" in out
    assert "serving config: classifier serves 1; labels: canary=1, stable=1" in out
    assert f"AIRFLOW_HOME={home} make ui DEMO_VENV={venv}" in out
    assert (
        f"log in as 'admin' with the password in {home}/simple_auth_manager_passwords.json.generated" in out
    )
    # What the demo shows of the task logs reads as text, not as raw structured-log records.
    assert "training accuracy" in out and "Serving config: classifier serves [1]" in out
    assert not [line for line in out.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\dT\S+ \[", line)], out
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    assert "apache-airflow==" in installed and "airflow-provider-savedmodel" in installed
    for test_only in ("tensorflow", "tensorflow-cpu", "moto", "mypy", "pytest", "selenium", "keras"):
        assert f"\n{test_only}==" not in f"\n{installed}", test_only


def test_the_ui_command_serves_our_dags_and_the_login_works(stack: AirflowStack, browser: Browser) -> None:
    def listed() -> list[str] | None:
        ids = sorted(d["dag_id"] for d in stack.get("/dags?limit=100")["dags"])
        return ids if len(ids) >= 8 else None

    ids = wait_until("the example DAGs to be listed", listed, 120)
    ours = [TRAINING, MANUAL, MIRROR, EXTERNAL, ROLLBACK, CANARY, FLEET, WATCHER]
    assert ids == sorted(ours), ids  # ours alone
    assert stack.get("/importErrors")["total_entries"] == 0
    browser.wait_for_text(TRAINING)


def test_training_from_its_form_with_the_defaults(stack: AirflowStack, browser: Browser) -> None:
    stack.unpause(TRAINING)
    run = trigger_from_the_form(stack, browser, TRAINING)
    assert run["conf"] == {"epochs": 300, "learning_rate": 0.5}
    stack.wait_for_run(TRAINING, run["dag_run_id"], timeout=300)
    WALKED.append((TRAINING, run["dag_run_id"]))
    published = stack.xcom(TRAINING, run["dag_run_id"], "publish")
    checked = stack.xcom(TRAINING, run["dag_run_id"], "check_served")
    assert checked["version"] == published["version"] and checked["max_abs_diff"] <= 1e-6
    browser.open(f"{stack.url}/dags/{TRAINING}/runs/{run['dag_run_id']}")
    browser.wait_for_text("promote_to_stable")
    browser.shot("training run")


def test_manual_publish_from_the_form_with_its_defaults_alone(
    stack: AirflowStack, browser: Browser, demo_root: Path
) -> None:
    stack.unpause(MANUAL)
    run = trigger_from_the_form(stack, browser, MANUAL)
    # What the form sent: every default, with their declared types, and no source.
    assert run["conf"]["source_url"] is None and run["conf"]["label"] is None
    assert run["conf"]["target_tf"] == "2.12" and run["conf"]["strip"] is True
    assert run["conf"]["keep_last"] == 5 and run["conf"]["check_clients"] is True
    stack.wait_for_run(MANUAL, run["dag_run_id"])
    WALKED.append((MANUAL, run["dag_run_id"]))
    published = stack.xcom(MANUAL, run["dag_run_id"], "publish")
    serving_base = demo_root / "serving" / "classifier"
    assert published["uri"] == f"{serving_base}/{published['version']}"
    assert published["validation"]["valid"] is True and published["served"]["name"] == "classifier"
    assert verify(published["uri"]).ok
    log = stack.task_log(MANUAL, run["dag_run_id"], "publish")
    # The log reads in the order things happen: the report, then the copy, then the result.
    assert log.index("VALID:") < log.index("publishing to") < log.index("Published version")
    browser.open(f"{stack.url}/dags/{MANUAL}/runs/{run['dag_run_id']}/tasks/publish")
    browser.wait_for_text(f"Published version {published['version']} at {published['uri']}")
    browser.shot("publish task log")


def test_a_release_chains_from_the_forms(
    stack: AirflowStack, browser: Browser, demo_root: Path, demo: tuple[Path, Path, str]
) -> None:
    """The second hour, as the README walks it: the version the manual publish form published
    (the sample classifier, which carries its warmup requests) is released from the canary
    rollout form. With the form's default server URL no TF Serving answers: the run fails at
    its first try saying one is needed, and leaves the model free. Against a TF Serving (the
    stand-in, loading with TensorFlow), the rollout waits until the version is served, bakes it
    against stable with the version's own warmup requests and promotes it; a second rollout
    triggered meanwhile is refused naming the first; ``savedmodel serving history`` tells all
    three. (The rollback form then moves stable back: the next test.)"""
    import subprocess

    from airflow_savedmodel.format.warmup import WARMUP_FILE
    from airflow_savedmodel.release import records

    from integration.tf_serving_standin import StandInServing

    config = resolve(str(demo_root / "serving" / "models.config"))
    base = demo_root / "serving" / "classifier"
    stable = model_config.describe(model_config.find(model_config.read(config), "classifier")).labels[
        "stable"
    ]  # type: ignore[arg-type]
    published = [v.version for v in list_versions(str(base)) if v.state == "complete" and v.version > stable]
    version = max(published)  # what the form's default candidate is: the manual publish's version
    assert (base / str(version) / WARMUP_FILE).is_file(), "the published sample carries warmup requests"
    stack.unpause(CANARY)

    nowhere = trigger_from_the_form(stack, browser, CANARY)
    assert nowhere["conf"]["server_url"] == "http://localhost:8501" and nowhere["conf"]["version"] is None
    with pytest.raises(AssertionError, match="ended failed"):
        stack.wait_for_run(CANARY, nowhere["dag_run_id"], timeout=300)
    ti = stack.get(f"/dags/{CANARY}/dagRuns/{nowhere['dag_run_id']}/taskInstances/rollout")
    assert (ti["state"], ti["try_number"]) == ("failed", 1), ti  # at once: a retry finds none either
    said = stack.full_log(CANARY, nowhere["dag_run_id"], "rollout")
    assert "a rollout needs a running TF Serving at this address; nothing was changed" in said, said
    assert records.current(resolve(str(base))) is None

    # TF Serving as two replicas reading the config; neither loads the candidate until the test
    # has seen a second rollout refused (the first one is in flight until then, whatever the
    # machine's speed), and the second loads it 3 s after the first. Started from a config whose
    # labels they have not loaded yet, as restarted replicas are, so with
    # --allow_version_labels_for_unavailable_models (docs/concepts.md).
    import threading

    loads = threading.Event()
    replicas = [
        StandInServing(
            Path(config.path),
            poll=0.2,
            allow_unavailable_labels=True,
            load_faults={("classifier", version): {"gate": loads}},
        ),
        StandInServing(
            Path(config.path),
            poll=0.2,
            allow_unavailable_labels=True,
            load_faults={("classifier", version): {"gate": loads, "delay": 3.0}},
        ),
    ]
    servers = ",".join(r.url for r in replicas)  # the form's one text field takes the list
    try:
        run = trigger_from_the_form(stack, browser, CANARY, server_url=servers, compare_outputs=False)
        assert run["conf"]["compare_outputs"] is False and run["conf"]["inputs"] is None
        wait_until(
            "the rollout to bake",
            lambda: (records.read(resolve(str(base)), version) or {}).get("state") == "baking",
            300,
        )
        second = trigger_from_the_form(stack, browser, CANARY, server_url=servers)
        with pytest.raises(AssertionError, match="ended failed"):
            stack.wait_for_run(CANARY, second["dag_run_id"], timeout=300)
        refused = stack.full_log(CANARY, second["dag_run_id"], "rollout")
        assert (
            f"model 'classifier' is being rolled out by run {CANARY}/{run['dag_run_id']}/rollout" in refused
        )
        loads.set()  # the replicas load the candidate now: the first rollout goes on
        stack.wait_for_run(CANARY, run["dag_run_id"], timeout=600)
        WALKED.append((CANARY, run["dag_run_id"]))
        outcome = stack.xcom(CANARY, run["dag_run_id"], "rollout")
        assert outcome["decision"] == "promoted" and outcome["version"] == version, outcome
        assert (
            model_config.describe(model_config.find(model_config.read(config), "classifier")).labels["stable"]
            == version
        )  # type: ignore[arg-type]
        for replica in replicas:  # each was baked on its own; the old version answered as stable
            assert set(replica.served_by("classifier", "label:stable")) == {stable}
            assert set(replica.served_by("classifier", "label:canary")) == {version}
            assert replica.refused_reloads == []  # canary moved once both had loaded it
        record = records.read(resolve(str(base)), version)
        assert record is not None and record["state"] == "promoted"
        checks = {c["name"]: c for c in record["checks"]}
        assert checks["available"]["message"] == f"version {version} AVAILABLE on all 2 replicas"
        assert checks["replicas"]["status"] == "pass" and checks["replicas"]["observed"] == 1.0
        assert record["run_id"] == f"{CANARY}/{run['dag_run_id']}/rollout"
        assert record["policy"]["outputs"]["compare"] is False
        ti = stack.get(f"/dags/{CANARY}/dagRuns/{run['dag_run_id']}/taskInstances/rollout")
        log = "\n".join(  # a second try resumes the rollout (the example retries once)
            stack.task_log(CANARY, run["dag_run_id"], "rollout", n)
            for n in range(1, int(ti["try_number"]) + 1)
        )
        # Waited until TF Serving served it (deferred to the triggerer when it was still loading;
        # the stand-in may have loaded it already, since the publish named it), then baked.
        started = log.index("waiting until TF Serving serves it")
        if "Pausing task as DEFERRED" in log:
            assert started < log.index("Pausing task as DEFERRED"), log
        assert started < log.index(f"promoted version {version} to stable"), log
        browser.open(f"{stack.url}/dags/{CANARY}/runs/{run['dag_run_id']}/tasks/rollout")
        browser.wait_for_text(f"promoted version {version} to stable")
        browser.shot("canary rollout task log")
    finally:
        for replica in replicas:
            replica.stop()
    history = subprocess.run(  # the CLI of the demo's own virtualenv, as the README walks it
        [
            str(demo[0] / "bin" / "savedmodel"),
            "serving",
            "history",
            config.path,
            "--model-name",
            "classifier",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert (
        f"version {version}: promoted" in history and f"run {CANARY}/{run['dag_run_id']}/rollout" in history
    )
    assert f"promoted version {version} to stable" in history, history


def test_rollback_from_its_form(stack: AirflowStack, browser: Browser, demo_root: Path) -> None:
    """Move stable to the newest version with the form's Version field, then roll back with the
    form's defaults: stable returns to the newest complete version below it."""
    config = resolve(str(demo_root / "serving" / "models.config"))

    def stable() -> int:
        return model_config.describe(model_config.find(model_config.read(config), "classifier")).labels[
            "stable"
        ]  # type: ignore[arg-type]

    complete = [
        v.version for v in list_versions(str(demo_root / "serving" / "classifier")) if v.state == "complete"
    ]
    assert len(complete) >= 2, complete
    stack.unpause(ROLLBACK)
    forward = trigger_from_the_form(stack, browser, ROLLBACK, version=str(complete[-1]))
    stack.wait_for_run(ROLLBACK, forward["dag_run_id"])
    assert stable() == complete[-1]
    back = trigger_from_the_form(stack, browser, ROLLBACK)
    assert back["conf"]["version"] is None and back["conf"]["label"] == "stable"
    stack.wait_for_run(ROLLBACK, back["dag_run_id"])
    WALKED.extend([(ROLLBACK, forward["dag_run_id"]), (ROLLBACK, back["dag_run_id"])])
    assert stable() == complete[-2]


def test_the_mirror_catches_up_on_batched_out_of_order_events(
    stack: AirflowStack, browser: Browser, demo_root: Path, tmp_path: Path
) -> None:
    """Versions published outside Airflow, announced by a burst of Asset events in shuffled
    order (the scheduler hands a run whatever queued up, in any order); the mirror ends up
    holding every complete version the source has."""
    earlier = {r["dag_run_id"] for r in stack.get(f"/dags/{MIRROR}/dagRuns?limit=100")["dag_runs"]}
    base = demo_root / "serving" / "classifier"
    new = [publish(small_model(tmp_path / f"m{seed}", seed), str(base)).version for seed in (21, 22, 23)]
    (asset,) = [a for a in stack.get("/assets?limit=100")["assets"] if a["name"] == "savedmodel_classifier"]
    events = [v for v in list_versions(str(base)) if v.state == "complete"]
    random.Random(7).shuffle(events)
    for info in events:
        stack.post(
            "/assets/events", {"asset_id": asset["id"], "extra": {"uri": info.url, "version": info.version}}
        )

    seen: list[list[dict[str, Any]]] = []

    def mirrored() -> list[dict[str, Any]] | None:
        """Every run the burst caused, once all have finished and no new one came for a while."""
        runs = stack.get(f"/dags/{MIRROR}/dagRuns?limit=100")["dag_runs"]
        fresh = [r for r in runs if r["dag_run_id"] not in earlier and r["run_type"] == "asset_triggered"]
        done = bool(fresh) and all(r["state"] in ("success", "failed") for r in fresh)
        seen.append(fresh if done else [])
        return fresh if done and len(seen) >= 3 and seen[-3] == fresh else None

    runs = wait_until("the mirror DAG's runs on the burst of events to finish", mirrored, 240, 3)
    assert all(r["state"] == "success" for r in runs), runs
    WALKED.extend((MIRROR, r["dag_run_id"]) for r in runs)
    run = runs[0]
    source = {v.version for v in list_versions(str(base)) if v.state == "complete"}
    held = {
        v.version for v in list_versions(str(demo_root / "mirror" / "classifier")) if v.state == "complete"
    }
    kept = sorted(source)[-3:]  # the mirror's retention keeps its three newest
    assert set(new) <= source and set(kept) <= held, (source, held)
    for number in kept:
        assert verify(str(demo_root / "mirror" / "classifier" / str(number))).ok
    browser.open(f"{stack.url}/dags/{MIRROR}/runs/{run['dag_run_id']}")
    browser.wait_for_text("mirror")
    browser.shot("mirror run")


def test_a_deferred_sensor_completes_in_the_triggerer_when_the_model_appears(
    stack: AirflowStack, browser: Browser, demo_root: Path, tmp_path: Path
) -> None:
    stack.unpause(EXTERNAL)
    export = tmp_path / "external" / "model"
    run_id = stack.trigger(EXTERNAL, {"export_url": str(export)})
    wait_until(
        "the sensor to defer",
        lambda: stack.task_state(EXTERNAL, run_id, "wait_for_export") == "deferred",
        120,
    )
    poke = stack.task_log(EXTERNAL, run_id, "wait_for_export")
    assert f"No complete SavedModel at {export} yet: does not exist" in poke
    browser.open(f"{stack.url}/dags/{EXTERNAL}/runs/{run_id}/tasks/wait_for_export")
    browser.wait_for_text("deferred")
    browser.shot("sensor deferred")

    # The external job writes its model (elsewhere first, then renamed into place as a whole).
    small_model(tmp_path / "external" / ".writing", seed=2)
    os.rename(tmp_path / "external" / ".writing", export)
    stack.wait_for_run(EXTERNAL, run_id, timeout=180)
    WALKED.append((EXTERNAL, run_id))
    # The try that completed: the first, or its retry when Airflow's resume race failed it.
    final = stack.get(f"/dags/{EXTERNAL}/dagRuns/{run_id}/taskInstances/wait_for_export")["try_number"]
    log = stack.task_log(EXTERNAL, run_id, "wait_for_export", try_number=max(int(final), 1))
    assert f"SavedModel ready at {export}" in log
    assert stack.xcom(EXTERNAL, run_id, "wait_for_export") == {
        "url": str(export),
        "state": "unverified",
        "fingerprint": manifest.fingerprint_of(resolve(str(export)).fs, str(export)),  # fingerprint.pb's
    }
    published = stack.xcom(EXTERNAL, run_id, "publish")
    config = model_config.describe(
        model_config.find(
            model_config.read(resolve(str(demo_root / "serving" / "models.config"))), "classifier"
        )  # type: ignore[arg-type]
    )
    assert config.labels["canary"] == published["version"] and published["version"] in config.versions
    browser.open(f"{stack.url}/dags/{EXTERNAL}/runs/{run_id}")
    browser.wait_for_text("success", reload_every=3)
    browser.shot("sensor run done")


def test_the_connection_form_and_its_test_button(
    stack: AirflowStack, browser: Browser, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # What the connection form renders from: Login shown with our label, our extra fields.
    (ours,) = [m for m in stack.ui("/connections/hook_meta") if m["connection_type"] == "savedmodel"]
    assert ours["hook_name"] == "TensorFlow SavedModel storage"
    standard = ours["standard_fields"]
    assert standard["login"]["hidden"] is False
    assert standard["login"]["title"] == "Key (S3 access key id; exposed to fsspec as 'key')"
    assert standard["password"]["title"] == "Secret (S3 secret access key; exposed to fsspec as 'secret')"
    assert all(standard[name]["hidden"] for name in ("host", "port", "url_schema"))
    assert set(ours["extra_fields"]) == {"storage_options", "test_url"}

    # The Test button: the API call the form makes, run by our hook in the api-server.
    (tmp_path / "models" / "ranker").mkdir(parents=True)
    body = {
        "connection_id": "savedmodel_probe",
        "conn_type": "savedmodel",
        "extra": json.dumps({"test_url": str(tmp_path / "models")}),
    }
    assert stack.post("/connections/test", body) == {
        "status": True,
        "message": f"listed 1 entries at {tmp_path / 'models'}",
    }
    refused = stack.post("/connections/test", {**body, "extra": "{}"})
    assert refused == {
        "status": False,
        "message": "set the connection's Test URL (a directory it can list) to test it",
    }

    # The form itself: pick our type, see Login relabeled and the Test URL field.
    from selenium.webdriver.common.keys import Keys

    browser.open(f"{stack.url}/connections")
    browser.find(By.XPATH, "//button[contains(., 'Add Connection')]").click()
    browser.wait_for_text("Connection Type")
    kind = browser.find(By.CSS_SELECTOR, "[role=dialog] input[role=combobox]")
    kind.send_keys("TensorFlow SavedModel")
    kind.send_keys(Keys.ENTER)
    browser.wait_for_text("Key (S3 access key id; exposed to fsspec as 'key')")
    browser.find(
        By.XPATH, "//*[@role='dialog']//button[contains(., 'Extra Fields') and not(contains(., 'JSON'))]"
    ).click()
    browser.wait_for_text("Test URL")
    browser.shot("connection form")

    # Save it as a user does, then press the list's Test button (the UI sends the stored
    # connection with "port": 0 for its empty port; the provider's plugin makes that pass).
    browser.type_into(browser.find(By.NAME, "connection_id"), "savedmodel_from_form")
    browser.type_into(browser.find(By.NAME, "element_test_url"), str(tmp_path / "models"))
    browser.find(By.XPATH, "//*[@role='dialog']//button[normalize-space()='Save']").click()
    browser.wait_for_text("savedmodel_from_form")
    saved = stack.get("/connections/savedmodel_from_form")
    assert saved["conn_type"] == "savedmodel" and saved["port"] is None
    row_test_button(browser, "savedmodel_from_form").click()
    browser.wait_for_text(f"listed 1 entries at {tmp_path / 'models'}", timeout=30)
    browser.shot("test button: success")

    # A connection whose Test URL does not exist: the button says so, with the reason.
    stack.post(
        "/connections",
        {
            "connection_id": "savedmodel_missing",
            "conn_type": "savedmodel",
            "extra": json.dumps({"test_url": str(tmp_path / "nowhere")}),
        },
    )
    browser.open(f"{stack.url}/connections")
    row_test_button(browser, "savedmodel_missing").click()
    browser.wait_for_text(f"{tmp_path / 'nowhere'}: FileNotFoundError", timeout=30)
    browser.shot("test button: failure")

    # A bucket behind a black hole (accepts connections, never answers): the button answers
    # within 15 s either way, saying nothing answered.
    import time

    from integration.servers import SilentServer

    hole = SilentServer()
    try:
        silent = {"endpoint_url": hole.endpoint, "token": "anon"}  # gcsfs: a runtime dependency
        stack.post(
            "/connections",
            {
                "connection_id": "savedmodel_silent",
                "conn_type": "savedmodel",
                "extra": json.dumps(
                    {"storage_options": json.dumps(silent), "test_url": "gs://bucket/models"}
                ),
            },
        )
        said = "gs://bucket/models: no answer within 10 s"
        started = time.monotonic()  # the API call the button makes
        answer = stack.post(
            "/connections/test", {**stack.get("/connections/savedmodel_silent"), "port": None}
        )
        assert time.monotonic() - started < 15 and not answer["status"] and said in answer["message"], answer
        browser.open(f"{stack.url}/connections")
        started = time.monotonic()
        button = row_test_button(browser, "savedmodel_silent")
        button.click()

        def told() -> bool:  # the answer is the button's tooltip: hover it again until it says so
            from selenium.webdriver.common.action_chains import ActionChains

            ActionChains(browser.driver).move_to_element(
                browser.find(By.XPATH, "//button[contains(., 'Add Connection')]")
            ).perform()
            ActionChains(browser.driver).move_to_element(button).perform()
            return said.lower() in browser.visible_text().lower()

        wait_until("the Test button to answer", told, 15, 0.5)
        assert time.monotonic() - started < 15
        browser.shot("test button: no answer")
    finally:
        hole.stop()


def test_the_models_view_shows_the_walks_model_its_versions_and_its_release(
    stack: AirflowStack, browser: Browser, demo_root: Path
) -> None:
    """After the walk's publishes and its rollout: the Models page (Airflow's navigation, the
    plugin's iframe) lists the demo's model; its page shows every version with its state (a copy
    that lost a file is partial, with the reason), the labels and the signatures; the release page
    shows the rollout's checks per replica and the plots of its bake; a version's Roll out link
    opens the rollout DAG's form with that version filled in."""
    import shutil

    from selenium.webdriver.common.by import By

    from airflow_savedmodel.release import records

    base = demo_root / "serving" / "classifier"
    complete = [v.version for v in list_versions(str(base)) if v.state == "complete"]
    broken = max(v.version for v in list_versions(str(base))) + 1
    shutil.copytree(base / str(complete[-1]), base / str(broken))  # a copy that lost a file
    lost = next((base / str(broken) / "variables").glob("*.data-*"))
    lost.unlink()
    released = max(r["version"] for r in records.history(resolve(str(base))) if r.get("state") == "promoted")

    browser.open(f"{stack.url}/plugin/savedmodel-models")
    browser.driver.switch_to.frame(browser.find(By.CSS_SELECTOR, "iframe", timeout=60))
    try:
        browser.wait_for_text("classifier")
        browser.shot("models page")
        browser.find(By.LINK_TEXT, "classifier").click()
        browser.wait_for_text("Versions")
        text = browser.visible_text()
        assert re.search(rf"\b{broken}\s+partial\s+{lost.relative_to(base / str(broken))}: missing", text), (
            text
        )
        assert "stable" in text and "serving_default" in text and f"version {released}" in text, text
        browser.shot("model page")
        browser.find(By.LINK_TEXT, f"version {released}").click()
        browser.wait_for_text("Per replica")
        text = browser.visible_text()
        assert "promoted" in text and "replicas" in text and "latency_p50" in text, text
        plots = browser.driver.find_elements(By.CSS_SELECTOR, "figure[data-plot] svg")
        assert len(plots) == 3, browser.driver.page_source[:2000]
        browser.shot("release page")
        browser.find(By.LINK_TEXT, "classifier").click()  # the crumb back to the model
        browser.wait_for_text("Versions")
        newest = complete[-1]
        browser.find(
            By.XPATH, f"//a[@data-dag='{CANARY}' and contains(normalize-space(), 'to version {newest}')]"
        ).click()
        field = browser.find(By.ID, "param_version")
        assert field.get_attribute("value") == str(newest)  # the candidate; the rest the DAG's defaults
        assert browser.find(By.ID, "param_server_url").get_attribute("value") == "http://localhost:8501"
        browser.shot("rollout form filled in")
    finally:
        browser.driver.switch_to.default_content()
    shutil.rmtree(base / str(broken))


def test_every_socket_of_the_ui_listens_on_loopback(stack: AirflowStack) -> None:
    """What `make ui` started listens on 127.0.0.1 only (no log server on 0.0.0.0)."""
    import psutil

    assert isinstance(stack, DemoUI)
    listening = []
    for process in stack.tree():
        try:
            sockets = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [
            (process.name(), c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN
        ]
    assert ("127.0.0.1", stack.port) in {(ip, port) for _, ip, port in listening}, listening
    assert all(ip in ("127.0.0.1", "::1") for _, ip, _ in listening), listening


def test_no_task_log_of_the_walk_has_an_error_line(stack: AirflowStack) -> None:
    assert {dag_id for dag_id, _ in WALKED} == {TRAINING, MANUAL, ROLLBACK, MIRROR, EXTERNAL, CANARY}, WALKED
    found = [line for dag_id, run_id in WALKED for line in error_lines(stack, dag_id, run_id)]
    assert not found, "\n".join(found)


def test_a_sigterm_stops_make_ui_and_everything_it_started(stack: AirflowStack) -> None:
    """Last: SIGTERM to `make ui` (not Ctrl-C) ends it, its four services and every task process
    they started, and frees its port."""
    import signal
    import socket

    assert isinstance(stack, DemoUI)
    assert len(stack.tree()) > 4
    # make passes the signal to the launcher and, once it has ended, ends by the same signal.
    assert stack.terminate() == -signal.SIGTERM, stack.log_tail("standalone")
    assert "==> stopped" in stack.log_tail("standalone", 20)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", stack.port)) != 0, "the UI's port is still open"
