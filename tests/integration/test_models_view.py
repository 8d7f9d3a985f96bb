"""The Models view's pages and JSON, served by the plugin's FastAPI app in process, over a real
Airflow metadata database (SQLite) and Airflow's own auth manager: a model published by a DAG
run (its Asset event names the serving config and the connection), released by a rollout
against the TF Serving stand-in (its record and bake beside the versions), and a version left
half-written. An admin sees all of it; a viewer, who may not read the model's connection, sees
no model and gets 403 from its pages and API. The browser walk (test_user_path.py) checks the
same pages inside Airflow's UI, and a user who may not read the DAG."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import model_config

from integration.test_airflow import run_dag, task_dag
from integration.test_rollout import POLICY, classifier, wait_served
from integration.tf_serving_standin import StandInServing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CONN = "models_store"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "models-view"


def keep(name: str, html: str) -> str:
    """Keep a page as a test artifact (test-artifacts/models-view/); the page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(html)
    return html


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> Iterator[dict[str, Any]]:
    """Version 1 published by a DAG (stable), version 2 promoted by a rollout, version 3 half
    written; a DAG whose rollout form acts on the model."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import Asset, Param

    from airflow_savedmodel.operators.serving import SavedModelRolloutOperator
    from airflow_savedmodel.operators.versions import SavedModelPublishOperator
    from airflow_savedmodel.release import traffic
    from airflow_savedmodel.release.policy import parse
    from airflow_savedmodel.release.rollout import Target, rollout
    from airflow_savedmodel.storage import publish
    from airflow_savedmodel.storage.publish import ServingTarget
    from airflow_savedmodel.tfserving import Endpoint

    root = tmp_path_factory.mktemp("models-view")
    config = root / "serving" / "models.config"
    config.parent.mkdir()
    base = root / "serving" / "viewed"
    os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps({"conn_type": "savedmodel"})
    standin = StandInServing(config, poll=0.05)
    try:
        with task_dag("models_view_publish") as dag:
            SavedModelPublishOperator(
                task_id="publish",
                model_url=classifier(root, "v1"),
                base_path=str(base),
                serving_config=str(config),
                model_name="viewed",
                dest_conn_id=CONN,
                outlets=[Asset(str(base))],
            )
        run = run_dag(dag)
        assert str(run.state) == "success"
        wait_served(standin, 1, model="viewed")  # TF Serving refuses a label on a version it has not loaded
        target = Target(resolve(str(config)), "viewed", resolve(str(base)))
        model_config.set_labels(target.config, "viewed", target.base, {"stable": 1})
        from airflow_savedmodel.signing.keys import Signer

        from signing_keys import key_pair

        key = key_pair(root / "keys", "release")
        published = publish(
            classifier(root, "v2", scale=1.00001),
            target.base,
            serving=ServingTarget(target.config, "viewed"),
            signer=Signer.from_pem(key.private_pem),
        )
        result = rollout(
            target,
            int(published.version),
            Endpoint(standin.url),
            parse(POLICY),
            traffic.for_version(target.base.join(str(published.version))),
            run_id="models_view_act/manual/rollout",
            poll=0.05,
        )
        assert result.decision == "promoted", result.message
        import shutil

        shutil.copytree(base / str(published.version), base / "3")  # a copy that lost a file
        next((base / "3" / "variables").glob("*.data-*")).unlink()
        with task_dag("models_view_act") as act:
            act.params = {"version": Param(None, type=["null", "integer"]), "model_name": Param("viewed")}
            SavedModelRolloutOperator(
                task_id="rollout",
                serving_config=str(config),
                model_name="{{ params.model_name }}",
                version="{{ params.version }}",
                server_url=standin.url,
                savedmodel_conn_id=CONN,
            )
        bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
        bag.bag_dag(act)
        sync_bag_to_db(bag, "dags-folder", None)
        yield {"config": str(config), "base": str(base), "promoted": int(published.version)}
    finally:
        standin.stop()
        os.environ.pop(f"AIRFLOW_CONN_{CONN.upper()}", None)


@pytest.fixture(scope="module")
def client(released: dict[str, Any]) -> Any:
    from airflow.api_fastapi.app import init_auth_manager
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_savedmodel.ui.pages import PREFIX, create_app

    init_auth_manager()
    root = FastAPI()
    root.mount(PREFIX, create_app())
    return TestClient(root)


def token(role: str) -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=role, role=role))
    return {"Authorization": f"Bearer {jwt}"}


def listed_model(client: Any) -> dict[str, Any]:
    """The test's model as the admin's Models page lists it."""
    listed = client.get("/savedmodel/api/models", headers=token("admin")).json()
    assert isinstance(listed, list), listed
    (model,) = [m for m in listed if m["name"] == "viewed"]
    return dict(model)


def test_the_models_page_lists_the_published_model_with_its_labels_and_last_release(
    client: Any, released: dict[str, Any]
) -> None:
    model = listed_model(client)
    assert model["config"] == released["config"] and model["base_path"] == released["base"]
    assert model["labels"]["stable"] == released["promoted"]
    assert model["newest"] == released["promoted"] and model["partial"] == [3]
    assert model["last_release"]["state"] == "promoted" and model["publishers"] == ["models_view_publish"]
    page = client.get("/savedmodel/models", headers=token("admin"))
    keep("models.html", page.text)
    assert page.status_code == 200 and f'href="/savedmodel/models/{model["id"]}"' in page.text
    assert "stable → 2" in page.text


def test_the_model_page_shows_versions_states_labels_entry_and_pre_filled_forms(
    client: Any, released: dict[str, Any]
) -> None:
    model = listed_model(client)
    doc = client.get(f"/savedmodel/api/models/{model['id']}", headers=token("admin")).json()
    rows = {r["version"]: r for r in doc["versions"]}
    assert [r["version"] for r in doc["versions"]] == [3, 2, 1]
    assert rows[3]["state"] == "partial" and "variables.data-00000-of-00001" in rows[3]["problems"][0], rows[
        3
    ]
    assert (
        rows[2]["labels"] == ["canary", "stable"]
        and rows[2]["state"] == "complete"
        and rows[2]["fingerprint"]
    )
    assert rows[2]["signed"] and rows[2]["signer"].startswith("key sha256:") and not rows[1]["signed"]
    assert doc["signatures"]["version"] == 2
    assert [s["name"] for s in doc["signatures"]["list"]] == ["classify", "serving_default"]
    assert doc["signatures"]["list"][1]["inputs"] == ["x: DT_FLOAT (-1, 4)"], doc["signatures"]
    assert 'name: "viewed"' in doc["entry_text"] and released["base"] in doc["entry_text"]
    forms = {a["dag_id"]: a for a in doc["actions"]}
    root = f"/savedmodel/models/{model['id']}/trigger"
    assert forms["models_view_publish"]["href"] == f"{root}/models_view_publish"
    assert forms["models_view_publish"]["title"].startswith("Publish a new version")
    assert forms["models_view_act"]["href"] == f"{root}/models_view_act"
    html = keep(
        "model.html", client.get(f"/savedmodel/models/{model['id']}?old=1&new=2", headers=token("admin")).text
    )
    assert f'href="{root}/models_view_act?version=1" data-dag="models_view_act">Roll out to version 1' in html
    form = keep("trigger.html", client.get(f"{root}/models_view_act?version=1", headers=token("admin")).text)
    assert re.search(r'name="version" data-kind="integer" data-nullable="true"\s+value="1"', form), form
    assert re.search(r'name="model_name" data-kind="string" data-nullable="false"\s+value="viewed"', form), (
        form
    )
    assert "filled in for viewed" in form
    refused = client.get(f"{root}/models_view_publish_nope", headers=token("admin"))
    assert refused.status_code == 404 and "acts on &#39;viewed&#39;" in refused.text
    assert re.search(r'<tr data-version="3">.*?partial', html, re.S)
    diff = client.get(f"/savedmodel/api/models/{model['id']}?old=1&new=2", headers=token("admin")).json()
    assert diff["diff"]["changes"] == []  # the same signatures


def test_the_release_page_shows_each_check_and_the_plots_of_the_bake(
    client: Any, released: dict[str, Any]
) -> None:
    model = listed_model(client)
    version = released["promoted"]
    doc = client.get(
        f"/savedmodel/api/models/{model['id']}/releases/{version}", headers=token("admin")
    ).json()
    names = {c["name"]: c for c in doc["checks"]}
    assert names["available"]["status"] == "pass" and "latency_p50" in " ".join(names), names
    assert len(doc["bake"]["at"]) >= POLICY["min_requests"]
    html = keep(
        "release.html",
        client.get(f"/savedmodel/models/{model['id']}/releases/{version}", headers=token("admin")).text,
    )
    for plot in ("latency", "differing", "errors"):
        assert f'<figure data-plot="{plot}"><svg' in html
    assert "Latency: canary against stable" in html and "promoted" in html
    missing = client.get(f"/savedmodel/models/{model['id']}/releases/99", headers=token("admin"))
    assert missing.status_code == 404 and "no release recorded for version 99" in missing.text


def test_a_user_who_may_not_read_the_connection_sees_no_model_and_gets_403(
    client: Any, released: dict[str, Any]
) -> None:
    model = listed_model(client)
    seen = client.get("/savedmodel/api/models", headers=token("viewer")).json()
    assert "viewed" not in [m["name"] for m in seen], seen
    for path in (
        f"/api/models/{model['id']}",
        f"/models/{model['id']}",
        f"/api/models/{model['id']}/releases/2",
    ):
        reply = client.get(f"/savedmodel{path}", headers=token("viewer"))
        assert reply.status_code == 403 and "you may not read this model" in reply.text, (path, reply.text)
    assert client.get("/savedmodel/api/models").status_code == 401  # no token: nothing
    assert client.get("/savedmodel/api/models/nope-00000000", headers=token("admin")).status_code == 404


def test_a_model_whose_storage_fails_shows_the_reason_and_no_credential(
    client: Any, released: dict[str, Any]
) -> None:
    """A publish event naming a config on a store that does not answer, read with a connection
    whose extra holds a token: the page says reading failed, and neither the token nor the
    connection's endpoint credentials reach the browser."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    secret = "tok-" + "9f3e1c7a5b"
    os.environ["AIRFLOW_CONN_LEAKY_STORE"] = json.dumps(
        {"conn_type": "savedmodel", "extra": {"token": secret, "endpoint_url": "http://127.0.0.1:9"}}
    )
    try:
        with create_session() as session:
            asset = AssetModel(uri="gs://nowhere/ranker", name="gs://nowhere/ranker")
            session.add(asset)
            session.flush()
            extra = {
                "serving_config": "gs://nowhere/models.config",
                "served": {"name": "unreachable"},
                "savedmodel_conn_id": "leaky_store",
            }
            session.add(AssetEvent(asset_id=asset.id, extra=extra, source_dag_id="models_view_publish"))
        listed = client.get("/savedmodel/api/models", headers=token("admin")).json()
        (model,) = [m for m in listed if m["name"] == "unreachable"]
        assert model["error"], model
        page = client.get(f"/savedmodel/models/{model['id']}", headers=token("admin"))
        assert page.status_code == 200 and 'class="error"' in page.text
        release = client.get(f"/savedmodel/models/{model['id']}/releases/1", headers=token("admin"))
        assert release.status_code == 200 and "storage request failed" in release.text
        for text in (
            json.dumps(listed),
            page.text,
            client.get("/savedmodel/models", headers=token("admin")).text,
        ):
            assert secret not in text
    finally:
        os.environ.pop("AIRFLOW_CONN_LEAKY_STORE", None)
