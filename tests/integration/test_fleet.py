"""The fleet DAG (example_savedmodel_fleet) under dag.test(): one mapped publish per model into one
shared model config, a refused model failing only its own task, a summary naming each outcome,
and a rerun that publishes nothing twice. The same DAG at scale, on Celery workers with one of
them killed, is in test_celery_stack.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import list_versions, model_config

from integration.test_airflow import example_dag, states

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
FLEET = "example_savedmodel_fleet"


def write_fleet(root: Path, count: int, broken: tuple[int, ...] = ()) -> list[str]:
    """``count`` small models under ``root`` (model-000, ...); those in ``broken`` have a
    variables shard cut short, which deep validation refuses."""
    names = []
    for index in range(count):
        rng = np.random.default_rng(100 + index)
        layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
        path = root / f"model-{index:03d}"
        export_dense_model(str(path), [layer])
        if index in broken:
            shard = next((path / "variables").glob("variables.data-*"))
            shard.write_bytes(shard.read_bytes()[:-8])
        names.append(path.name)
    return names


def summary_of(run: Any) -> dict[str, Any]:
    ti = next(t for t in run.get_task_instances() if t.task_id == "summary")
    value = ti.xcom_pull(task_ids="summary", key="summary")
    assert isinstance(value, dict), (ti.state, value)
    return value


def test_a_fleet_publishes_each_model_once_into_one_config_and_a_refused_one_stops_no_other(
    airflow_db: str, tmp_path: Path
) -> None:
    serving_root = Path(os.environ["SAVEDMODEL_DEMO_ROOT"]) / "fleet" / "serving"
    shutil.rmtree(serving_root, ignore_errors=True)
    exports = tmp_path / "exports"
    names = write_fleet(exports, 5, broken=(3,))
    dag = example_dag(FLEET)
    run = dag.test(run_conf={"export_root": str(exports)})
    tis = {(t.task_id, t.map_index): str(t.state) for t in run.get_task_instances()}
    assert str(run.state) == "failed" and tis[("summary", -1)] == "failed", tis
    assert [tis[("publish", i)] for i in range(5)] == ["success"] * 3 + ["failed", "success"], tis
    outcome = summary_of(run)
    assert [p["model"] for p in outcome["published"]] == [n for n in names if n != "model-003"]
    assert {p["version"] for p in outcome["published"]} == {1}
    assert outcome["refused"] == [{"model": "model-003", "findings": ["variables-entry-out-of-bounds"]}]
    assert outcome["failed"] == []
    config = model_config.read(resolve(str(serving_root / "models.config")))
    entries = {m.name: model_config.describe(m) for m in config.model_config_list.config}
    assert sorted(entries) == [n for n in names if n != "model-003"]
    for name, entry in entries.items():
        assert entry.base_path == str(serving_root / name) and entry.versions == [1], entry
    assert not (serving_root / "model-003").exists() or list_versions(str(serving_root / "model-003")) == []

    # the next night, nothing changed: every model already holds its content; no second version
    shutil.rmtree(exports / "model-003")
    again = dag.test(run_conf={"export_root": str(exports)})
    assert str(again.state) == "success", states(again)
    outcome = summary_of(again)
    assert {(p["version"], p["created"]) for p in outcome["published"]} == {(1, False)}
    for name in entries:
        assert [v.version for v in list_versions(str(serving_root / name))] == [1]


def test_the_form_defaults_write_samples_when_the_export_root_is_empty(
    airflow_db: str, tmp_path: Path
) -> None:
    serving_root = Path(os.environ["SAVEDMODEL_DEMO_ROOT"]) / "fleet" / "serving"
    shutil.rmtree(serving_root, ignore_errors=True)
    run = example_dag(FLEET).test(run_conf={"export_root": str(tmp_path / "empty")})
    assert str(run.state) == "success", states(run)
    outcome = summary_of(run)
    assert [p["model"] for p in outcome["published"]] == ["model-000", "model-001", "model-002"]
    assert set(outcome["config_wait_seconds"]) == {"p50", "p95", "max"}
