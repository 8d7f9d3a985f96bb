"""The provider inside real Airflow: DagBag, dag.test() runs, operators and sensors in real task
contexts, deferrable sensors through their triggers, trigger serialization, provider metadata."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model, forward

from integration.servers import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    "example_savedmodel_training_to_serving",
    "example_savedmodel_serving_mirror",
    "example_savedmodel_manual_publish",
    "example_savedmodel_rollback",
    "example_savedmodel_external_export",
    "example_savedmodel_canary_rollout",
    "example_savedmodel_fleet",
    "example_savedmodel_version_watcher",
]


def run_dag(dag: Any, **kwargs: Any) -> Any:
    """dag.test() for a DAG defined in a test (serialized to the DB first, as Airflow 3 requires)."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(**kwargs)


def task_dag(dag_id: str) -> Any:
    """An unscheduled DAG for running operators and sensors in real task contexts."""
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


def example_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_dagbag_loads_every_example_without_import_errors(airflow_db: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(EXAMPLES) <= set(bag.dag_ids)
    training = bag.get_dag("example_savedmodel_training_to_serving")
    assert not training.catchup and training.schedule == "@daily"
    manual = bag.get_dag("example_savedmodel_manual_publish")
    params = manual.params.dump()
    assert set(params) == {
        "source_url",
        "destination",
        "strip",
        "target_tf",
        "check_clients",
        "serving_config",
        "model_name",
        "label",
        "keep_last",
    }
    # The form offers exactly the releases the package ships, and no "null" choices.
    from airflow_savedmodel.format import opdefs

    assert manual.params.get_param("target_tf").schema["enum"] == [None, *opdefs.releases()]
    for name in ("target_tf", "label"):  # the empty choice is shown by name, not as "null"
        assert manual.params.get_param(name).schema["values_display"]["null"] != "null", name
    assert manual.params["source_url"] is None and manual.params["check_clients"] is True
    mirror = bag.get_dag("example_savedmodel_serving_mirror")
    assert mirror.is_paused_upon_creation is False
    for dag_id in EXAMPLES:  # every form field explains itself, and every task says what it does
        dag = bag.get_dag(dag_id)
        for name in dag.params.dump():
            assert dag.params.get_param(name).description, (dag_id, name)
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.doc_md or task.doc, (dag_id, task.task_id)


def test_training_to_serving_end_to_end_and_tensorflow_agrees(airflow_db: str) -> None:
    run = run_dag(example_dag("example_savedmodel_training_to_serving"))
    assert str(run.state) == "success", states(run)
    serving = Path(os.environ["SAVEDMODEL_DEMO_ROOT"]) / "serving" / "classifier"
    newest = max(int(p.name) for p in serving.iterdir() if p.name.isdigit())
    model_dir = serving / str(newest)
    from airflow_savedmodel.storage import verify

    assert verify(str(model_dir)).ok
    from tensorflow_serving.apis import prediction_log_pb2

    from interop.test_warmup import tf_records

    warmup_logs = [
        prediction_log_pb2.PredictionLog.FromString(r)
        for r in tf_records(model_dir / "assets.extra" / "tf_serving_warmup_requests")
    ]
    assert (
        len(warmup_logs) == 10
        and warmup_logs[0].predict_log.request.inputs["x"].tensor_shape.dim[0].size == 5
    )
    with SavedModel.open(str(model_dir)) as model:
        bundle = model.variables()
        assert bundle is not None
        layers = [
            DenseLayer(bundle.read("dense/kernel"), bundle.read("dense/bias"), "relu"),
            DenseLayer(bundle.read("dense_1/kernel"), bundle.read("dense_1/bias"), "softmax"),
        ]
        assert model.meta_graphs[0].proto.meta_info_def.stripped_default_attrs
    from interop import tf_oracle

    x = np.random.default_rng(1).normal(1.0, 1.5, (8, 4)).astype(np.float32)
    served = tf_oracle.run_tf1(model_dir, ["serve"], "serving_default", {"x": x})["y"]
    np.testing.assert_allclose(served, forward(layers, x), atol=1e-5)
    examples = [tf_oracle.example({"x": row}) for row in x]
    classified = tf_oracle.run_tf1(model_dir, ["serve"], "classify", {"inputs": examples})
    assert classified["classes"][0].tolist() == [b"setosa", b"versicolor", b"virginica"]
    np.testing.assert_allclose(
        tf_oracle.run_tf2(model_dir, "serving_default", {"x": x})["y"], served, atol=1e-6
    )

    mirror = run_dag(example_dag("example_savedmodel_serving_mirror"))
    assert str(mirror.state) == "success", states(mirror)
    mirrored = Path(os.environ["SAVEDMODEL_DEMO_ROOT"]) / "mirror" / "classifier"
    assert str(newest) in {p.name for p in mirrored.iterdir()}  # the mirror keeps version numbers

    # gated publish: the config names the version as canary; the check promoted it to stable
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import model_config

    config = resolve(str(serving.parent / "models.config"))
    model = model_config.describe(model_config.find(model_config.read(config), "classifier"))  # type: ignore[arg-type]
    assert model.labels == {"canary": newest, "stable": newest} and newest in model.versions
    # a second run publishes a new version (new run id, same weights: recognised, not copied)
    again = run_dag(example_dag("example_savedmodel_training_to_serving"))
    assert str(again.state) == "success", states(again)
    assert max(int(p.name) for p in serving.iterdir() if p.name.isdigit()) == newest
    # the rollback DAG with its form defaults moves stable back to the previous complete version
    from airflow_savedmodel.storage import publish

    earlier = publish(str(model_dir), str(serving), version=newest + 1)
    model_config.set_labels(config, "classifier", resolve(str(serving)), {"stable": earlier.version})
    rollback = run_dag(example_dag("example_savedmodel_rollback"))
    assert str(rollback.state) == "success", states(rollback)
    model = model_config.describe(model_config.find(model_config.read(config), "classifier"))  # type: ignore[arg-type]
    assert model.labels["stable"] == newest


def test_manual_publish_with_params(airflow_db: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    dag = example_dag("example_savedmodel_manual_publish")
    conf = {
        "source_url": str(zoo["tf1_stripped"]),
        "destination": str(tmp_path / "base"),
        "strip": True,
        "target_tf": None,
        "keep_last": 1,
        "serving_config": str(tmp_path / "models.config"),
        "model_name": "manual",
        "label": "canary",
    }
    run = run_dag(dag, run_conf=conf)
    assert str(run.state) == "success", states(run)
    assert [p.name for p in (tmp_path / "base").iterdir() if not p.name.startswith(".")] == ["1"]
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import model_config

    found = model_config.find(model_config.read(resolve(str(tmp_path / "models.config"))), "manual")
    assert found is not None
    served = model_config.describe(found)
    assert (served.base_path, served.versions, served.labels) == (str(tmp_path / "base"), [1], {"canary": 1})
    conf = dict(conf, serving_config=None, label=None)  # plain publishes from here on
    # The form's defaults as the UI sends them: release "2.20" must stay the string "2.20"
    run = run_dag(dag, run_conf=dict(conf, target_tf="2.20", keep_last=5, destination=str(tmp_path / "b20")))
    assert str(run.state) == "success", states(run)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    report = tis["publish"].xcom_pull(task_ids="publish", key="report")
    assert "target TensorFlow 2.20 (cpu)" in report["checks"] and report["valid"] is True
    bad = dict(conf, target_tf="2.12", destination=str(tmp_path / "other"))  # debug_name is unknown to 2.12
    run = run_dag(dag, run_conf=bad)
    assert states(run)["publish"] == "failed"
    (failed,) = [ti for ti in run.get_task_instances() if ti.task_id == "publish"]
    report = failed.xcom_pull(task_ids="publish", key="report")
    assert report["valid"] is False
    assert {f["code"] for f in report["findings"] if f["severity"] == "error"} == {"attr-unknown-in-target"}
    assert report["url"] == f"{conf['source_url']} (after strip default attrs)"  # not the temporary copy
    assert all(f["file"] is None or f["file"].startswith(conf["source_url"]) for f in report["findings"])
    assert not (tmp_path / "other").exists() or not any(
        p.name.isdigit() for p in (tmp_path / "other").iterdir()
    )


def small_model(root: Path, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    layers = [DenseLayer(rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32), "softmax")]
    return export_dense_model(str(root / f"model-{seed}"), layers)


def test_a_dag_written_with_the_old_names_runs(airflow_db: str, tmp_path: Path) -> None:
    """A DAG written before the vocabulary settled (``url``, ``src``/``dst``, ``labels``,
    ``base``-style names) runs to success and does what it says, each old name warned once."""
    from airflow.exceptions import AirflowProviderDeprecationWarning

    from airflow_savedmodel import deprecation
    from airflow_savedmodel.operators.savedmodel import (
        SavedModelCopyOperator,
        SavedModelPublishOperator,
        SavedModelValidateOperator,
    )
    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor

    model = small_model(tmp_path)
    deprecation._warned.clear()
    with pytest.warns(AirflowProviderDeprecationWarning) as said, task_dag("old_names_run") as dag:
        ready = SavedModelSensor(task_id="ready", url=model, poke_interval=0.1, timeout=30)
        valid = SavedModelValidateOperator(task_id="validate", url=model)
        copied = SavedModelCopyOperator(task_id="copy", src=model, dst=str(tmp_path / "copy"))
        published = SavedModelPublishOperator(
            task_id="publish",
            src=str(tmp_path / "copy"),
            base_path=str(tmp_path / "base"),
            labels=["canary"],
            serving_config=str(tmp_path / "models.config"),
            model_name="old",
        )
        ready >> valid >> copied >> published
    assert [str(w.message).split(":")[0] + ":" + str(w.message).split("'")[1] for w in said] == [
        "SavedModelSensor:url",
        "SavedModelValidateOperator:url",
        "SavedModelCopyOperator:src",
        "SavedModelCopyOperator:dst",
        "SavedModelPublishOperator:src",
        "SavedModelPublishOperator:labels",
    ]
    run = run_dag(dag)
    assert str(run.state) == "success", states(run)
    assert (tmp_path / "copy" / "saved_model.pb").exists() and (
        tmp_path / "base" / "1" / "saved_model.pb"
    ).exists()
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import model_config

    found = model_config.find(model_config.read(resolve(str(tmp_path / "models.config"))), "old")
    assert found is not None and model_config.describe(found).labels == {"canary": 1}


def test_every_operator_and_sensor_in_a_real_task_context(
    airflow_db: str, tmp_path: Path, gcs: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_savedmodel.assets import savedmodel_asset
    from airflow_savedmodel.operators.savedmodel import (
        SavedModelCopyOperator,
        SavedModelExportOperator,
        SavedModelPublishOperator,
        SavedModelRetentionOperator,
        SavedModelStripDefaultAttrsOperator,
        SavedModelValidateOperator,
    )
    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor, SavedModelVersionSensor

    bucket = gcs.bucket()
    conn = {"conn_type": "savedmodel", "extra": {"storage_options": gcs.options}}
    monkeypatch.setenv("AIRFLOW_CONN_SM_GCS", json.dumps(conn))
    src = small_model(tmp_path)
    base = str(tmp_path / "serving")
    asset = savedmodel_asset(base)

    late_dir = tmp_path / "late-model"

    def start_late_producer() -> None:
        """Write a model 2 s from now, while the deferrable sensor downstream is deferred."""
        import threading

        def produce() -> None:
            small_model(tmp_path, 11)
            (tmp_path / "model-11").rename(late_dir)

        threading.Timer(2.0, produce).start()

    def export(export_dir: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        export_dense_model(
            export_dir, [DenseLayer(rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32))]
        )

    with task_dag("test_savedmodel_operators") as dag:
        wait_model = SavedModelSensor(task_id="wait_model", model_url=src, poke_interval=0.1, timeout=30)
        from airflow.providers.standard.operators.python import PythonOperator

        producer = PythonOperator(task_id="start_late_producer", python_callable=start_late_producer)
        wait_deferred = SavedModelSensor(
            task_id="wait_deferred", model_url=str(late_dir), deferrable=True, poke_interval=0.2, timeout=60
        )
        validate = SavedModelValidateOperator(task_id="validate", model_url=src, deep=True, target_tf="2.12")
        strip = SavedModelStripDefaultAttrsOperator(
            task_id="strip",
            model_url=src,
            destination_url=f"{bucket}/stripped",
            dest_conn_id="sm_gcs",
            clear_devices=True,
        )
        to_gcs = SavedModelPublishOperator(
            task_id="copy_to_gcs",
            model_url=f"{bucket}/stripped",
            base_path=f"{bucket}/serving",
            source_conn_id="sm_gcs",
            dest_conn_id="sm_gcs",
        )
        back = SavedModelCopyOperator(
            task_id="copy_back",
            model_url=f"{bucket}/serving/1",
            destination_url=str(tmp_path / "back"),
            source_conn_id="sm_gcs",
        )
        exported = SavedModelExportOperator(
            task_id="export", python_callable=export, op_kwargs={"seed": 7}, base_path=base, outlets=[asset]
        )
        published = SavedModelExportOperator(
            task_id="publish_url", model_url=src, base_path=base, target_tf="2.12"
        )
        wait_version = SavedModelVersionSensor(
            task_id="wait_version",
            base_path=base,
            newer_than=1,
            deferrable=True,
            poke_interval=0.1,
            timeout=30,
        )
        wait_gcs = SavedModelVersionSensor(
            task_id="wait_gcs_version",
            base_path=f"{bucket}/serving",
            savedmodel_conn_id="sm_gcs",
            poke_interval=0.1,
            timeout=30,
        )
        retention = SavedModelRetentionOperator(task_id="retention", base_path=base, keep_last=1)
        wait_model >> producer >> wait_deferred >> validate >> strip >> to_gcs >> [back, wait_gcs]
        validate >> exported >> published >> wait_version >> retention

    run = run_dag(dag)
    assert set(states(run).values()) == {"success"}, states(run)
    assert (tmp_path / "back" / "saved_model.pb").exists()
    assert sorted(p.name for p in (tmp_path / "serving").iterdir() if p.name.isdigit()) == ["2"]
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == asset.uri)
            .all()
        )
        extras = [e.extra for e in events]
    assert [(x["version"], x["created"]) for x in extras] == [(1, True)]
    assert extras[0]["uri"] == str(tmp_path / "serving" / "1") and extras[0]["fingerprint"]
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["publish_url"].xcom_pull(task_ids="publish_url")["version"] == 2
    assert tis["export"].xcom_pull(task_ids="export")["created"] is True
    assert tis["validate"].xcom_pull(task_ids="validate", key="report")["valid"] is True
    assert tis["wait_version"].xcom_pull(task_ids="wait_version")["version"] == 2
    deferred = tis["wait_deferred"]
    assert deferred.xcom_pull(task_ids="wait_deferred")["url"] == str(late_dir)
    assert (deferred.end_date - deferred.start_date).total_seconds() > 1.0  # it waited in the trigger
    # The "Published version" extra link: the console page of the version on gs://, none locally.
    link_key = "_link_SavedModelPublishedLink"
    bucket_name = bucket.removeprefix("gs://")
    assert tis["copy_to_gcs"].xcom_pull(task_ids="copy_to_gcs", key=link_key) == (
        f"https://console.cloud.google.com/storage/browser/{bucket_name}/serving/1"
    )
    assert tis["export"].xcom_pull(task_ids="export", key=link_key) == ""


def test_validate_operator_fails_the_task_with_the_report(
    airflow_db: str, tmp_path: Path, zoo: dict[str, Path]
) -> None:
    from airflow_savedmodel.operators.savedmodel import SavedModelValidateOperator

    with task_dag("test_savedmodel_invalid") as dag:
        SavedModelValidateOperator(
            task_id="validate", model_url=str(zoo["tf2_module"]), target_tf="2.12", retries=3
        )
    run = run_dag(dag)
    (ti,) = run.get_task_instances()
    assert str(ti.state) == "failed" and ti.try_number == 1  # AirflowFailException: no retries
    report = ti.xcom_pull(task_ids="validate", key="report")
    assert report["valid"] is False and report["findings"][0]["code"] == "attr-unknown-in-target"


def test_triggers_serialize_and_round_trip() -> None:
    from airflow_savedmodel.triggers.savedmodel import SavedModelTrigger, SavedModelVersionTrigger

    for trigger in (
        SavedModelTrigger(
            "gs://b/m/1",
            savedmodel_conn_id="c",
            storage_options={"token": "anon"},
            deep=True,
            poke_interval=5,
        ),
        SavedModelVersionTrigger("s3://b/m", newer_than=3, savedmodel_conn_id=None, poke_interval=2.5),
    ):
        path, kwargs = trigger.serialize()
        module, _, name = path.rpartition(".")
        clone = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
        assert clone.serialize() == (path, kwargs)
        json.dumps(kwargs)


async def first_event(trigger: Any, timeout: float = 20.0) -> Any:
    return await asyncio.wait_for(trigger.run().__anext__(), timeout)


def test_triggers_fire_locally_and_against_the_gcs_server(tmp_path: Path, gcs: Store) -> None:
    from airflow_savedmodel.storage import publish
    from airflow_savedmodel.triggers.savedmodel import SavedModelTrigger, SavedModelVersionTrigger

    async def scenario() -> None:
        model_dir = tmp_path / "late"
        waiting = asyncio.create_task(first_event(SavedModelTrigger(str(model_dir), poke_interval=0.05)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(small_model, tmp_path, 3)
        (tmp_path / "model-3").rename(model_dir)
        event = await waiting
        assert event.payload["status"] == "success" and event.payload["model"]["state"] == "unverified"

        base = gcs.bucket() + "/serving"
        waiting = asyncio.create_task(
            first_event(
                SavedModelVersionTrigger(
                    base, newer_than=None, storage_options=gcs.options, poke_interval=0.05
                )
            )
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(publish, str(model_dir), base, base_options=gcs.options)
        event = await waiting
        assert event.payload["version"]["version"] == 1 and event.payload["version"]["state"] == "complete"
        ready = await first_event(
            SavedModelTrigger(base + "/1", storage_options=gcs.options, poke_interval=0.05)
        )
        assert ready.payload["model"]["state"] == "complete"
        failed = await first_event(SavedModelTrigger("nosuchscheme://x/y", poke_interval=0.05))
        assert failed.payload["status"] == "error" and "nosuchscheme" in failed.payload["message"]

    asyncio.run(scenario())


def test_provider_info_validates_against_airflows_schema_and_is_listed() -> None:
    import importlib.resources

    import jsonschema

    from airflow_savedmodel.get_provider_info import get_provider_info

    schema = json.loads(
        importlib.resources.files("airflow").joinpath("provider_info.schema.json").read_text()
    )
    info = get_provider_info()
    jsonschema.validate(info, schema)
    from importlib.metadata import entry_points

    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_savedmodel")
    ]
    assert entry.load()() == info
    for group in ("hooks", "operators", "sensors", "triggers"):
        for item in info[group]:
            for module in item["python-modules"]:
                __import__(module)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    listed = {p["package_name"]: p for p in json.loads(document)}
    assert "airflow-provider-savedmodel" in listed


def test_operator_and_sensor_modules_import_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "import airflow_savedmodel.operators.savedmodel, airflow_savedmodel.sensors.savedmodel\n"
        "import airflow_savedmodel.triggers.savedmodel, airflow_savedmodel.hooks.savedmodel\n"
        "heavy = [m for m in ('numpy', 'google.protobuf', 'gcsfs', 's3fs', 'tensorflow') if m in sys.modules]\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "heavy:"


def test_deferrable_sensors_defer_to_their_triggers_and_report_errors(tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor, SavedModelVersionSensor
    from airflow_savedmodel.triggers.savedmodel import SavedModelTrigger, SavedModelVersionTrigger

    sensor = SavedModelSensor(
        task_id="s", model_url=str(tmp_path / "absent"), deferrable=True, poke_interval=7, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert isinstance(deferred.value.trigger, SavedModelTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.trigger.serialize()[1]["poke_interval"] == 7
    with pytest.raises(AirflowException, match="waiting failed: FileNotFoundError: gone"):
        sensor.execute_complete({}, {"status": "error", "message": "FileNotFoundError: gone"})
    version_sensor = SavedModelVersionSensor(
        task_id="v", base_path=str(tmp_path), newer_than="4", deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        version_sensor.execute({})
    assert (
        isinstance(deferred.value.trigger, SavedModelVersionTrigger)
        and deferred.value.trigger.newer_than == 4
    )
    event = {"status": "success", "version": {"version": 5, "url": "x/5"}}
    assert version_sensor.execute_complete({}, event) == event["version"]


def test_connection_secrets_are_masked_and_stay_out_of_xcom(
    airflow_db: str, tmp_path: Path, gcs: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.log import redact

    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.operators.savedmodel import SavedModelCopyOperator

    secret = "s3cr3t-refresh-token-0123456789"
    options = {**gcs.options, "session_kwargs": {}, "credentials_token": secret}
    conn = {"conn_type": "savedmodel", "extra": {"storage_options": {**gcs.options}}, "password": secret}
    monkeypatch.setenv("AIRFLOW_CONN_SM_SECRET", json.dumps(conn))
    hook = SavedModelHook("sm_secret")
    assert hook.connection.password == secret
    from airflow_savedmodel.hooks.savedmodel import mask_sensitive, storage_options_from_connection

    resolved = storage_options_from_connection(hook.connection)
    assert resolved["secret"] == secret
    mask_sensitive(options)
    assert secret not in str(redact(f"token is {secret}"))
    bucket = gcs.bucket()
    with task_dag("test_savedmodel_secrets") as dag:
        SavedModelCopyOperator(
            task_id="copy",
            model_url=small_model(tmp_path),
            destination_url=f"{bucket}/m",
            dest_conn_id="sm_gcs_plain",
        )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SM_GCS_PLAIN",
        json.dumps({"conn_type": "savedmodel", "extra": {"storage_options": gcs.options}}),
    )
    run = run_dag(dag)
    (ti,) = run.get_task_instances()
    value = ti.xcom_pull(task_ids="copy")
    assert str(ti.state) == "success" and set(value) == {"uri", "version", "fingerprint"}
    assert "token" not in json.dumps(value) and "anon" not in json.dumps(value)


def test_the_connection_test_button_lists_the_test_url_and_never_shows_the_secret(
    airflow_db: str, s3: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook

    from integration.servers import DenyingServer

    bucket = s3.bucket()
    s3.fs().pipe(f"{bucket}/models/ranker/1/saved_model.pb", b"x")
    client = s3.options["client_kwargs"]
    conn = {
        "conn_type": "savedmodel",
        "login": "testing",
        "password": "testing",
        "extra": {
            "client_kwargs": client,
            "test_url": f"{bucket}/models",
        },  # flat extra, as the form saves it
    }
    monkeypatch.setenv("AIRFLOW_CONN_SM_S3", json.dumps(conn))
    assert SavedModelHook("sm_s3").test_connection() == (True, f"listed 1 entries at {bucket}/models")

    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-SECRET"
    denying = DenyingServer()
    try:
        refused = {
            **conn,
            "password": secret,
            "extra": {"client_kwargs": {**client, "endpoint_url": denying.endpoint}},
        }
        monkeypatch.setenv("AIRFLOW_CONN_SM_DENIED", json.dumps(refused))
        hook = SavedModelHook("sm_denied")
        assert hook.test_connection() == (
            False,
            "set the connection's Test URL (a directory it can list) to test it",
        )
        ok, message = hook.test_connection(f"{bucket}/models")
        # Every hook operation turns the refusal into a typed error naming the URL, no secret in it.
        from airflow_savedmodel.errors import StorageError

        for operation in (
            lambda: hook.inspect(f"{bucket}/models/ranker/1"),
            lambda: hook.versions(f"{bucket}/models/ranker"),
            lambda: hook.model_readiness(f"{bucket}/models/ranker/1"),
        ):
            with pytest.raises(StorageError) as caught:
                operation()
            assert str(caught.value).startswith(f"{bucket}/models/ranker")
            assert "storage request failed: " in str(caught.value) and "(401)" in str(caught.value)
            assert secret not in str(caught.value) and caught.value.__suppress_context__
    finally:
        denying.stop()
    assert (
        not ok
        and message.startswith(f"{bucket}/models: ")
        and "(401)" in message
        and "Unauthorized" in message
    )
    assert secret not in message


def test_the_connection_test_button_answers_in_time_when_the_store_never_does(
    airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket behind a black hole (connections accepted, never answered): the Test button's
    answer comes within 15 s, saying nothing answered, while the library's retries run on."""
    import time

    from airflow_savedmodel.hooks.savedmodel import CONNECTION_TEST_SECONDS, SavedModelHook

    from integration.servers import SilentServer

    hole = SilentServer()
    try:
        conn = {
            "conn_type": "savedmodel",
            "extra": {
                "client_kwargs": {"endpoint_url": hole.endpoint, "region_name": "us-west-2"},
                "anon": True,
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_SM_SILENT", json.dumps(conn))
        started = time.monotonic()
        ok, message = SavedModelHook("sm_silent").test_connection("s3://bucket/models")
        took = time.monotonic() - started
    finally:
        hole.stop()
    assert not ok and message == (
        f"s3://bucket/models: no answer within {CONNECTION_TEST_SECONDS:g} s: the store, or the service its "
        "credentials come from, is not reachable from the API server"
    )
    assert took < 15, took


def test_aws_connection_goes_through_airflow_object_storage(
    s3: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `aws` connection is turned into a filesystem by the amazon provider (ObjectStoragePath)."""
    endpoint = s3.options["client_kwargs"]["endpoint_url"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SM_AWS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-west-2"},
            }
        ),
    )
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook

    bucket = s3.bucket()
    hook = SavedModelHook("sm_aws")
    fs, _ = hook.filesystem(f"{bucket}/serving")
    assert (
        type(fs).__name__ == "S3FileSystem" and fs.client_kwargs.get("endpoint_url") is None
    )  # built by the provider
    published = SavedModelHook().publish(small_model(tmp_path), f"{bucket}/serving", dst_hook=hook)
    assert published.version == 1
    assert [v.state for v in hook.versions(f"{bucket}/serving")] == ["complete"]
    assert hook.inspect(f"{bucket}/serving/1")["tag_sets"] == [["serve"]]
    assert hook.model_ready(f"{bucket}/serving/1") is not None


def test_manual_publish_runs_from_its_defaults_and_keeps_the_served_signatures(
    airflow_db: str, tmp_path: Path
) -> None:
    """The form's defaults alone publish (a sample classifier written on first use); a model
    whose signatures would break the served version's clients is refused before publishing."""
    dag = example_dag("example_savedmodel_manual_publish")
    conf = {"destination": str(tmp_path / "base"), "serving_config": str(tmp_path / "models.config")}
    first = run_dag(dag, run_conf=conf)
    assert str(first.state) == "success", states(first)
    tis = {ti.task_id: ti for ti in first.get_task_instances()}
    published = tis["publish"].xcom_pull(task_ids="publish")
    sample = f"{os.environ['SAVEDMODEL_DEMO_ROOT']}/exports/sample/model"
    assert tis["source"].xcom_pull(task_ids="source") == sample
    assert published["version"] == 1 and published["created"] is True
    assert published["served"]["labels"] == {}  # the label's default is none
    again = run_dag(dag, run_conf=conf)
    assert str(again.state) == "success", states(again)
    tis = {ti.task_id: ti for ti in again.get_task_instances()}
    assert tis["publish"].xcom_pull(task_ids="publish")["created"] is False  # the same sample
    # A model whose input is renamed would break the clients of version 1, which is served.
    rng = np.random.default_rng(3)
    renamed = export_dense_model(
        str(tmp_path / "renamed"),
        [DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")],
        input_key="features",
    )
    refused = run_dag(dag, run_conf=dict(conf, source_url=renamed))
    assert states(refused)["publish"] == "failed"
    (ti,) = [t for t in refused.get_task_instances() if t.task_id == "publish"]
    report = ti.xcom_pull(task_ids="publish", key="report")
    breaking = [f["message"] for f in report["findings"] if f["code"] == "signature-breaking-change"]
    assert "input 'x' of 'serving_default' removed" in breaking, report["findings"]
    assert sorted(p.name for p in (tmp_path / "base").iterdir() if p.name.isdigit()) == ["1"]
    unchecked = run_dag(dag, run_conf=dict(conf, source_url=renamed, check_clients=False))
    assert str(unchecked.state) == "success", states(unchecked)


def test_operator_templates_render_as_airflow_renders_them(
    airflow_db: str, tmp_path: Path, zoo: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels, flags and counts given as templates arrive as the values they name: a label is
    never split into characters, "False" is false, "2" names version 2."""
    from airflow.sdk import Param

    from airflow_savedmodel.operators import savedmodel as operators
    from airflow_savedmodel.storage import list_versions, publish

    base, config = str(tmp_path / "base"), str(tmp_path / "models.config")
    src = small_model(tmp_path, seed=5)
    pushed = str(tmp_path / "pushed")
    for seed in (6, 7, 8):
        publish(small_model(tmp_path / f"pushed-{seed}", seed=seed), pushed)
    unstripped = str(zoo["tf2_module"])  # attrs release 2.12 does not know: invalid for it
    from airflow_savedmodel.operators import _common

    monkeypatch.setattr(_common, "XCOM_FINDINGS_PER_CODE", 1)  # the report an operator pushes to XCom
    with task_dag("test_savedmodel_templates") as dag:
        dag.params.update(
            {
                "label": Param("canary", type="string"),
                "labels": Param("canary, stable", type="string"),
                "off": Param(False, type="boolean"),
                "on": Param(True, type="boolean"),
                "only": Param("2", type="string"),
            }
        )
        operators.SavedModelMirrorOperator(  # only the versions named: not 1, nor 3
            task_id="mirror_named",
            base_path=pushed,
            mirror_base_path=f"{tmp_path}/mirror",
            versions="{{ params.only }}",
        )
        one = operators.SavedModelPublishOperator(
            task_id="one_label",
            model_url=src,
            base_path=base,
            serving_config=config,
            model_name="m",
            version_labels="{{ params.label }}",
        )
        two = operators.SavedModelExportOperator(
            task_id="two_labels_unvalidated",
            model_url=unstripped,
            base_path=f"{tmp_path}/other",
            strip_default_attrs="{{ params.off }}",
            validate="{{ params.off }}",
            target_tf="2.12",
            serving_config=f"{tmp_path}/other.config",
            model_name="m",
            version_labels="{{ params.labels }}",
            required_signatures=(),
        )
        operators.SavedModelValidateOperator(  # 4 findings of one code, 3 of another
            task_id="capped_report",
            model_url=str(zoo["tf1_builder"]),
            target_tf="2.12",
            required_signatures=(),
        )
        dry = operators.SavedModelRetentionOperator(
            task_id="dry_retention", base_path=base, keep_last=1, dry_run="{{ params.on }}"
        )
        one >> two >> dry
    run = run_dag(dag)
    result = states(run)
    assert result == {
        "one_label": "success",
        "two_labels_unvalidated": "success",
        "capped_report": "failed",
        "dry_retention": "success",
        "mirror_named": "success",
    }, result
    assert [v.version for v in list_versions(f"{tmp_path}/mirror")] == [2]
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["one_label"].xcom_pull(task_ids="one_label")["served"]["labels"] == {"canary": 1}
    two_labels = tis["two_labels_unvalidated"].xcom_pull(task_ids="two_labels_unvalidated")
    assert two_labels["validation"] is None  # validate="False" rendered false: not validated
    assert two_labels["served"]["labels"] == {"canary": 1, "stable": 1}
    report = tis["capped_report"].xcom_pull(task_ids="capped_report", key="report")
    codes = [f["code"] for f in report["findings"]]
    assert len(codes) == len(set(codes)), codes  # at most one finding of each code
    assert report["omitted"] == {"attr-default-unknown-in-target": 3, "attr-unknown-in-target": 2}, report
    assert tis["dry_retention"].xcom_pull(task_ids="dry_retention")["dry_run"] is True


def test_sensors_skip_on_soft_fail_and_log_a_wait_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor, SavedModelVersionSensor

    failed = {"status": "error", "message": "gs://b/m: storage request failed"}
    soft = SavedModelSensor(task_id="soft", model_url="gs://b/m", soft_fail=True)
    with pytest.raises(AirflowSkipException, match="storage request failed"):
        soft.execute_complete({}, failed)
    hard = SavedModelSensor(task_id="hard", model_url="gs://b/m")
    with pytest.raises(AirflowException, match="storage request failed") as raised:
        hard.execute_complete({}, failed)
    assert not isinstance(raised.value, AirflowSkipException)

    lines: list[str] = []

    class Log:
        def info(self, message: str, *args: Any) -> None:
            lines.append(message % args)

    base = tmp_path / "base"
    monkeypatch.setattr(SavedModelVersionSensor, "log", property(lambda self: Log()))
    sensor = SavedModelVersionSensor(task_id="wait", base_path=str(base))
    for _ in range(5):
        assert sensor.poke({}) is False
    (base / "1").mkdir(parents=True)
    for _ in range(3):
        assert sensor.poke({}) is False
    assert len(lines) == 2, lines
    assert "no version" in lines[0] and "version 1 partial" in lines[1], lines
    # A poke that finds the model says so, as the trigger's event does (a retry that finds it at
    # once logs the same line as a resumed deferral).
    model = small_model(tmp_path)
    monkeypatch.setattr(SavedModelSensor, "log", property(lambda self: Log()))
    assert SavedModelSensor(task_id="found", model_url=model).poke({})
    assert lines[-1] == f"SavedModel ready at {model}", lines


def test_example_dag_discovery_finds_the_providers_import_name(caplog: pytest.LogCaptureFixture) -> None:
    """With Airflow's examples loaded, Airflow imports each provider's distribution name with
    dashes as underscores to look for example DAGs; that import must succeed (else every task
    log opens with an ERROR)."""
    import importlib

    from airflow.dag_processing.bundles import manager
    from airflow.providers_manager import ProvidersManager

    assert "airflow-provider-savedmodel" in ProvidersManager().providers
    importlib.import_module("airflow-provider-savedmodel".replace("-", "_"))
    failures: list[str] = []
    original = manager.log.exception

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        failures.append(message % args if args else message)
        original(message, *args, **kwargs)

    manager.log.exception = record  # type: ignore[method-assign]
    try:
        bundles: list[Any] = []
        manager._add_provider_example_dags_to_bundle(bundles)
    finally:
        manager.log.exception = original  # type: ignore[method-assign]
    assert not [f for f in failures if "savedmodel" in f], failures


def test_deferrable_sensors_start_in_the_triggerer_where_their_arguments_allow(airflow_db: str) -> None:
    """start_from_trigger when asked: deferrable, no signature required, nothing templated but
    the watched URL (rendered by Airflow 3.3's triggerer); the trigger's kwargs survive
    serialization. Not asked, a sensor pokes once in a worker first (its log is visible)."""
    from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor, SavedModelVersionSensor

    with task_dag("start_from_trigger") as dag:
        asked: dict[str, Any] = {"start_from_trigger": True, "deferrable": True}
        started = SavedModelSensor(task_id="started", model_url="{{ params.url }}", poke_interval=7, **asked)
        versions = SavedModelVersionSensor(task_id="versions", base_path="/m/r", newer_than=3, **asked)
        not_asked = SavedModelSensor(task_id="not_asked", model_url="/m/r/1", deferrable=True)
        poking = SavedModelSensor(
            task_id="poking", model_url="/m/r/1", deferrable=False, start_from_trigger=True
        )
        signed = SavedModelSensor(task_id="signed", model_url="/m/r/1", trusted_signers="/k.pem", **asked)
        templated_conn = SavedModelVersionSensor(
            task_id="templated_conn", base_path="/m/r", savedmodel_conn_id="{{ params.conn }}", **asked
        )
        templated_threshold = SavedModelVersionSensor(
            task_id="templated_threshold", base_path="/m/r", newer_than="{{ params.n }}", **asked
        )
    assert started.start_from_trigger and versions.start_from_trigger
    for sensor in (not_asked, poking, signed, templated_conn, templated_threshold):
        assert not sensor.start_from_trigger, sensor.task_id
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    args = restored.get_task("started").start_trigger_args
    assert restored.get_task("started").start_from_trigger
    assert args.trigger_cls == "airflow_savedmodel.triggers.savedmodel.SavedModelTrigger"
    assert args.next_method == "execute_complete"
    kwargs = BaseSerialization.deserialize(args.trigger_kwargs)  # stored encoded
    assert kwargs["model_url"] == "{{ params.url }}" and kwargs["poke_interval"] == 7
    kwargs = BaseSerialization.deserialize(restored.get_task("versions").start_trigger_args.trigger_kwargs)
    assert kwargs["newer_than"] == 3 and kwargs["signed"] is False
