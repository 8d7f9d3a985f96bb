"""Which models the Models view knows, from Airflow's records: our publishes' Asset events (the
serving config, the model, the connection, the publishing DAG) and the example DAGs' operators,
serialized as Airflow stores them (the forms that act on a model, and which of their fields
to fill in). Also the bake's plots and where the plugin mounts the view."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from airflow_savedmodel.ui import known, plots
from airflow_savedmodel.ui.known import Event


def event(config: str, name: str, dag: str | None, stamp: str, conn: str | None = None) -> Event:
    extra: dict[str, Any] = {"serving_config": config, "served": {"name": name}, "version": 1}
    if conn:
        extra["savedmodel_conn_id"] = conn
    return Event(7, extra, dag, stamp)


def test_events_name_each_model_once_with_every_publisher_and_the_newest_connection() -> None:
    found = known.from_events(
        [
            event("gs://b/serving/models.config", "ranker", "train", "2026-01-01", "old_conn"),
            event("gs://b/serving/models.config/", "ranker", "manual", "2026-01-02", "gcs"),
            event("file:///srv/models.config", "ranker", None, "2026-01-03"),
            event("/srv/models.config", "ranker", "other", "2026-01-04"),
            Event(8, {"uri": "x"}, "unrelated", "2026-01-05"),  # not ours: no serving config
        ]
    )
    assert len(found) == 2
    gcs = next(m for m in found.values() if m.config.startswith("gs://"))
    assert (gcs.publishers, gcs.conn_id, gcs.last_published) == ({"train", "manual"}, "gcs", "2026-01-02")
    local = next(m for m in found.values() if not m.config.startswith("gs://"))
    assert local.publishers == {"other"} and local.dags == {"other"}
    assert gcs.id != local.id and gcs.id.startswith("ranker-")


def serialized(dag_id: str) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return dict(json.loads(json.dumps(DagSerialization.to_dict(bag.dags[dag_id]))))


def test_the_example_dags_forms_act_on_the_demo_model_with_the_right_fields() -> None:
    from savedmodel_demo_settings import SERVING_CONFIG

    dags = [
        (d, serialized(d))
        for d in (
            "example_savedmodel_canary_rollout",
            "example_savedmodel_rollback",
            "example_savedmodel_manual_publish",
            "example_savedmodel_training_to_serving",
        )
    ]
    (model,) = known.known_models([], dags)
    assert (model.name, model.config) == ("classifier", SERVING_CONFIG)
    actions = {a.dag_id: a for a in model.actions}
    rollout = actions["example_savedmodel_canary_rollout"]
    assert rollout.kind == "rollout" and rollout.conf(model, 4) == {"version": 4}
    rollback = actions["example_savedmodel_rollback"]
    assert rollback.kind == "label" and rollback.conf(model, 3) == {"model_name": "classifier", "version": 3}
    publish = actions["example_savedmodel_manual_publish"]
    assert publish.kind == "publish" and not publish.takes_version
    assert publish.conf(model) == {"model_name": "classifier", "serving_config": SERVING_CONFIG}
    # The training DAG publishes and then moves a label: one form, a publishing one.
    assert [a.kind for a in model.actions if a.dag_id == "example_savedmodel_training_to_serving"] == [
        "publish"
    ]
    # Before any publish, the DAGs that act on it are the ones whose read access it needs.
    assert model.dags == set(actions)


def test_a_dags_form_shows_its_params_with_the_models_values_filled_in() -> None:
    from airflow_savedmodel.ui import forms

    declared = serialized("example_savedmodel_canary_rollout")["dag"]["params"]
    fields = {f.name: f for f in forms.fields(declared, {"version": 7})}
    assert (fields["version"].kind, fields["version"].nullable, fields["version"].value) == (
        "integer",
        True,
        7,
    )
    assert fields["version"].filled and not fields["server_url"].filled
    assert fields["server_url"].value == "http://localhost:8501" and fields["server_url"].kind == "string"
    assert fields["compare_outputs"].kind == "boolean" and fields["compare_outputs"].value is True
    assert list(fields) == [item[0] for item in declared]  # the DAG's order


def test_the_bake_is_drawn_as_three_svg_plots() -> None:
    series = {
        "at": [0.1 * i for i in range(50)],
        "replica": ["a:1"] * 50,
        "canary_ms": [1.0 + i % 7 for i in range(50)],
        "stable_ms": [1.5 + i % 5 for i in range(50)],
        "canary_error": [i % 10 == 0 for i in range(50)],
        "stable_error": [False] * 50,
        "differs": [None if i % 2 else i % 4 == 0 for i in range(50)],
    }
    drawn = plots.all_plots(series)
    assert set(drawn) == {"latency", "differing", "errors"}
    assert all(svg.startswith("<svg") and svg.rstrip().endswith("</svg>") for svg in drawn.values())
    assert "Latency: canary against stable" in drawn["latency"] and "canary (n=50)" in drawn["latency"]
    assert plots._rolling([True, None, False, False], 2) == [1.0, 1.0, 0.5, 0.0]
    assert plots.all_plots(None) == {} and plots.all_plots({"at": []}) == {}
    assert "outputs were not compared" in plots.differing({**series, "differs": [None] * 50})


@pytest.mark.parametrize(
    ("argv", "mounted"),
    [
        (["/venv/bin/airflow", "api-server", "--port", "8080"], True),
        (["/venv/bin/airflow", "scheduler"], False),
        (["/venv/bin/airflow", "tasks", "run", "api-server"], False),
    ],
)
def test_the_view_is_built_only_on_the_api_server(argv: list[str], mounted: bool) -> None:
    from airflow_savedmodel.plugins import on_api_server

    assert on_api_server(argv) is mounted
