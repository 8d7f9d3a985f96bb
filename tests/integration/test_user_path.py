"""The Airflow user's path, end to end: a real Airflow 3 (api-server, scheduler, dag-processor,
triggerer) and a real headless Chromium.

Log in; trigger the manual publish DAG from its form with the defaults plus a source model and
find the published version in the task log; see the mirror DAG run on the Asset event; see a
deferrable sensor Deferred and then completed by the triggerer while a model appears; trigger the
training DAG through the REST API with a conf. Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import serving, verify

from integration.airflow_stack import AirflowStack, wait_until
from integration.browser import Browser, missing_browser

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(900)]
MANUAL = "example_savedmodel_manual_publish"
MIRROR = "example_savedmodel_serving_mirror"
EXTERNAL = "example_savedmodel_external_export"
TRAINING = "example_savedmodel_training_to_serving"


def small_model(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(path), [layer])


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[AirflowStack]:
    airflow = AirflowStack(tmp_path_factory.mktemp("airflow-home"), demo_root)
    try:
        yield airflow.start()
    except BaseException:
        for name in airflow.SERVICES:
            print(f"---- {name} ----\n{airflow.log_tail(name)}")
        raise
    finally:
        airflow.stop()


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


def newest_run(stack: AirflowStack, dag_id: str, **match: Any) -> dict[str, Any] | None:
    runs = stack.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
    return next((r for r in runs if all(r.get(k) == v for k, v in match.items())), None)


def test_manual_publish_from_the_form_with_its_defaults(
    stack: AirflowStack, browser: Browser, demo_root: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    for dag_id in (MANUAL, MIRROR):
        stack.unpause(dag_id)
    source = small_model(tmp_path / "from-the-form", seed=1)

    browser.open(f"{stack.url}/dags/{MANUAL}")
    browser.find(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
    field = browser.find(By.NAME, "element_source_url")
    browser.shot("trigger form")
    browser.type_into(field, source)
    browser.find(By.XPATH, "//*[@role='dialog']//button[normalize-space()='Trigger']").click()
    run = wait_until("the run the form triggered", lambda: newest_run(stack, MANUAL, run_type="manual"), 60)
    browser.shot("triggered")
    # What the form sent: the source plus every default, with their declared types.
    assert run["conf"]["source_url"] == source
    assert (
        run["conf"]["target_tf"] == "2.12" and run["conf"]["strip"] is True and run["conf"]["keep_last"] == 5
    )
    stack.wait_for_run(MANUAL, run["dag_run_id"])

    published = stack.xcom(MANUAL, run["dag_run_id"], "publish")
    serving_base = demo_root / "serving" / "classifier"
    assert published["uri"] == f"{serving_base}/{published['version']}"
    assert published["validation"]["valid"] is True and published["served"]["name"] == "classifier"
    assert verify(published["uri"]).ok

    run_path = f"{stack.url}/dags/{MANUAL}/runs/{run['dag_run_id']}/tasks/publish"
    browser.open(run_path)
    browser.wait_for_text(f"Published version {published['version']} at {published['uri']}")
    browser.shot("publish task log")

    # The Asset event carries the version; the mirror DAG runs on it and keeps the number.
    def mirrored() -> dict[str, Any] | None:
        run = newest_run(stack, MIRROR, run_type="asset_triggered")
        return run if run and run["state"] in ("success", "failed") else None

    mirror_run = wait_until("the mirror DAG to run on the Asset event", mirrored, 180, 2)
    assert mirror_run["state"] == "success"
    events = stack.get(f"/assets/events?source_dag_id={MANUAL}")["asset_events"]
    assert [e["extra"]["version"] for e in events] == [published["version"]]
    mirror = demo_root / "mirror" / "classifier" / str(published["version"])
    assert verify(str(mirror)).ok
    browser.open(f"{stack.url}/dags/{MIRROR}/runs/{mirror_run['dag_run_id']}")
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
    log = stack.task_log(EXTERNAL, run_id, "wait_for_export", try_number=1)
    assert f"SavedModel ready at {export}" in log
    assert stack.xcom(EXTERNAL, run_id, "wait_for_export") == {
        "url": str(export),
        "state": "unverified",
        "fingerprint": None,
    }
    published = stack.xcom(EXTERNAL, run_id, "publish")
    config = serving.describe(
        serving.find(serving.read(resolve(str(demo_root / "serving" / "models.config"))), "classifier")  # type: ignore[arg-type]
    )
    assert config.labels["canary"] == published["version"] and published["version"] in config.versions
    browser.open(f"{stack.url}/dags/{EXTERNAL}/runs/{run_id}")
    browser.wait_for_text("success", reload_every=3)
    browser.shot("sensor run done")


def test_training_triggered_through_the_rest_api_with_a_conf(stack: AirflowStack, browser: Browser) -> None:
    stack.unpause(TRAINING)  # also starts the schedule's latest run; this test follows its own
    run_id = stack.trigger(TRAINING, {"epochs": 120, "learning_rate": 0.4})
    stack.wait_for_run(TRAINING, run_id, timeout=300)
    assert "after 120 epochs at learning rate 0.4" in stack.task_log(TRAINING, run_id, "train")
    published = stack.xcom(TRAINING, run_id, "publish")
    checked = stack.xcom(TRAINING, run_id, "check_served")
    assert checked["version"] == published["version"] and checked["max_abs_diff"] <= 1e-6
    assert "canary" in published["served"]["labels"]
    browser.open(f"{stack.url}/dags/{TRAINING}/runs/{run_id}")
    browser.wait_for_text("promote_to_stable")
    browser.shot("training run")


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
