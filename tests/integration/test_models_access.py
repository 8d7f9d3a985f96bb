"""Who sees which model in the Models view, decided by Airflow's own auth manager, end to end:
an Airflow API server and dag processor in multi-team mode (the simple auth manager's way to
give a user some DAGs and not others), two DAG bundles owned by two teams, each with a DAG whose
rollout form acts on a model of its own, and a real Chromium logged in as a member of each team.

A member of one team sees that team's model in the Models page (inside Airflow's UI, through
the plugin's navigation entry) and not the other's; the other's model page answers 403 in the
browser and from the API; without a token the API answers 401.
Screenshots: test-artifacts/screenshots/models-access/.
"""

from __future__ import annotations

import json
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import publish
from airflow_savedmodel.storage.publish import ServingTarget

from integration.airflow_stack import AirflowStack, wait_until
from integration.browser import Browser, missing_browser

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(600)]
TEAMS = {
    "ml-platform": ("ml_release", "classifier", "ml"),
    "research": ("research_release", "ranker", "researcher"),
}


class TeamStack(AirflowStack):
    """The API server and the dag processor (what the Models view reads), in multi-team mode,
    each team owning a DAG bundle; the users ``ml`` and ``researcher`` belong to one team each."""

    SERVICES: ClassVar[dict[str, list[str]]] = {
        "api-server": ["api-server", "--host", "127.0.0.1"],
        "dag-processor": ["dag-processor"],
    }

    def __init__(self, home: Path, bundles: dict[str, Path]) -> None:
        super().__init__(home, home / "demo")
        self.passwords = {"admin": self.password, "ml": "ml-secret-1", "researcher": "research-secret-1"}
        (home / "passwords.json").write_text(json.dumps(self.passwords))
        config = [
            {
                "name": team,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path), "refresh_interval": 5},
                "team_name": team,
            }
            for team, path in bundles.items()
        ]
        self.env.update(
            {
                "AIRFLOW__CORE__MULTI_TEAM": "True",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(config),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,ml:op:ml-platform,researcher:op:research",
            }
        )

    def start(self) -> TeamStack:
        import subprocess

        from integration.airflow_stack import BIN

        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.env, check=True, capture_output=True)
        subprocess.run([str(BIN / "airflow"), "teams", "sync"], env=self.env, check=True, capture_output=True)
        return super().start()  # type: ignore[return-value]


def small_model(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(path), [layer])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamStack]:
    root = tmp_path_factory.mktemp("models-access")
    bundles = {}
    for seed, (team, (dag_id, model, _)) in enumerate(TEAMS.items()):
        config = root / team / "serving" / "models.config"
        config.parent.mkdir(parents=True)
        publish(
            small_model(root / f"{model}-src", seed),
            resolve(str(config.parent / model)),
            serving=ServingTarget(resolve(str(config)), model),
        )
        bundles[team] = root / team / "dags"
        bundles[team].mkdir()
        (bundles[team] / f"{dag_id}.py").write_text(
            textwrap.dedent(
                f'''
                """{team}'s release of {model}."""
                from airflow.sdk import DAG, Param
                from airflow_savedmodel.operators.serving import SavedModelRolloutOperator

                with DAG("{dag_id}", schedule=None, params={{"version": Param(None, type=["null", "integer"])}}):
                    SavedModelRolloutOperator(
                        task_id="rollout",
                        serving_config="{config}",
                        model_name="{model}",
                        version="{{{{ params.version }}}}",
                        server_url="http://127.0.0.1:9",
                    )
                '''
            )
        )
    airflow = TeamStack(root / "airflow", bundles)
    try:
        airflow.start()
        for dag_id, _, _ in TEAMS.values():
            airflow.wait_for_dag(dag_id)
        yield airflow
    except BaseException:
        for name in airflow.SERVICES:
            print(f"---- {name} ----\n{airflow.log_tail(name, 60)}")
        raise
    finally:
        airflow.stop()


def token(stack: TeamStack, user: str) -> str:
    reply = stack._request(
        "POST", "/auth/token", {"username": user, "password": stack.passwords[user]}, auth=False
    )
    return str(reply["access_token"])


def api(stack: TeamStack, path: str, user: str | None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token(stack, user)}"} if user else {}
    request = urllib.request.Request(f"{stack.url}/savedmodel/api{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def ids(stack: TeamStack) -> dict[str, str]:
    """Model name -> its id in the view (as the admin, who sees both)."""
    status, models = api(stack, "/models", "admin")
    assert status == 200, models
    found = {m["name"]: m["id"] for m in models}
    assert set(found) == {"classifier", "ranker"}, models
    return found


def log_in(browser: Browser, stack: TeamStack, user: str) -> None:
    from selenium.webdriver.common.by import By

    browser.driver.delete_all_cookies()
    browser.open(f"{stack.url}/auth/login")
    browser.find(By.NAME, "username").send_keys(user)
    browser.find(By.NAME, "password").send_keys(stack.passwords[user])
    browser.find(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(f"{user}'s login to finish", lambda: "/auth/login" not in browser.driver.current_url, 30, 0.2)


def models_in_the_ui(browser: Browser, stack: TeamStack) -> str:
    """The Models page as Airflow's UI shows it (the plugin's navigation entry, an iframe)."""
    from selenium.webdriver.common.by import By

    browser.open(f"{stack.url}/plugin/savedmodel-models")
    frame = browser.find(By.CSS_SELECTOR, "iframe", timeout=60)
    browser.driver.switch_to.frame(frame)
    try:
        browser.wait_for_text("Models")
        return browser.visible_text()
    finally:
        browser.driver.switch_to.default_content()


def triggers_from_the_form(browser: Browser, stack: TeamStack, model: str, dag_id: str) -> None:
    """In Airflow's UI, the model's page (inside the plugin's frame) opens the DAG's form with
    the version filled in; Trigger makes the run through Airflow's API as the user, and Airflow's
    UI shows the run around the frame."""
    from selenium.webdriver.common.by import By

    before = {r["dag_run_id"] for r in stack.get(f"/dags/{dag_id}/dagRuns")["dag_runs"]}
    browser.open(f"{stack.url}/plugin/savedmodel-models")
    browser.driver.switch_to.frame(browser.find(By.CSS_SELECTOR, "iframe", timeout=60))
    try:
        browser.find(By.LINK_TEXT, model).click()
        browser.find(
            By.XPATH, f"//a[@data-dag='{dag_id}' and contains(normalize-space(), 'to version 1')]"
        ).click()
        field = browser.find(By.ID, "param_version")
        assert field.get_attribute("value") == "1"
        browser.shot(f"{dag_id} form filled in")
        browser.find(By.XPATH, "//button[normalize-space()='Trigger']").click()
    finally:
        browser.driver.switch_to.default_content()
    wait_until(
        "Airflow's UI to show the run", lambda: f"/dags/{dag_id}/runs/" in browser.driver.current_url, 30, 0.2
    )
    browser.wait_for_text("Dag Run")
    browser.shot(f"{dag_id} run")
    (run,) = [r for r in stack.get(f"/dags/{dag_id}/dagRuns")["dag_runs"] if r["dag_run_id"] not in before]
    assert run["conf"] == {"version": 1} and run["run_type"] == "manual", run
    assert browser.driver.current_url.endswith(urllib.parse.quote(run["dag_run_id"], safe=""))


@pytest.mark.parametrize("team", list(TEAMS))
def test_a_team_member_sees_their_model_and_not_the_others(
    stack: TeamStack, ids: dict[str, str], team: str
) -> None:
    if missing_browser():
        pytest.fail(missing_browser() or "")
    dag_id, mine, user = TEAMS[team]
    (theirs,) = {name for _, name, _ in TEAMS.values()} - {mine}
    browser = Browser(f"models-access-{user}")
    try:
        log_in(browser, stack, user)
        text = models_in_the_ui(browser, stack)
        browser.shot(f"{user} models page")
        assert mine in text and theirs not in text, text
        browser.open(f"{stack.url}/savedmodel/models/{ids[theirs]}")
        browser.wait_for_text("403")
        assert "you may not read this model" in browser.visible_text()
        browser.shot(f"{user} refused {theirs}")
        browser.open(f"{stack.url}/savedmodel/models/{ids[mine]}")
        browser.wait_for_text(f"Roll out ({dag_id})")
        browser.shot(f"{user} model page")
        triggers_from_the_form(browser, stack, mine, dag_id)
    finally:
        browser.quit()
    status, models = api(stack, "/models", user)
    assert status == 200 and [m["name"] for m in models] == [mine], models
    for path in (f"/models/{ids[theirs]}", f"/models/{ids[theirs]}/releases/1"):
        status, reply = api(stack, path, user)
        assert status == 403 and "you may not read this model" in reply["detail"], (path, reply)
    assert api(stack, f"/models/{ids[mine]}", user)[0] == 200


def test_the_view_needs_a_login_and_is_in_airflows_navigation(stack: TeamStack) -> None:
    assert api(stack, "/models", None)[0] == 401
    plugins = stack.get("/plugins")["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "savedmodel"]
    assert [(v["name"], v["url_route"], v["href"]) for v in ours["external_views"]] == [
        ("Models", "savedmodel-models", "/savedmodel/models")
    ]
    assert ours["fastapi_apps"][0]["url_prefix"] == "/savedmodel"
