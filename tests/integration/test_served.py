"""SavedModelServedSensor against a TF Serving stand-in that loads versions with TensorFlow's
real loader (tests/integration/tf_serving_standin.py says what it is and is not)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import publish
from airflow_savedmodel.storage.publish import ServingTarget

from integration.tf_serving_standin import StandInServing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.tf,
    # A trigger closed after its event must have nothing left to await (it had: its HTTP session).
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


def model(root: Path, name: str, broken: bool = False) -> str:
    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    path = export_dense_model(str(root / name), [layer])
    if broken:  # an op no TensorFlow registers: the loader refuses the graph
        with SavedModel.open(path) as opened:
            proto = opened.proto
        proto.meta_graphs[0].graph_def.node[-1].op = "NoSuchOp"
        (Path(path) / "saved_model.pb").write_bytes(proto.SerializeToString(deterministic=True))
    return path


def poke_until(sensor: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = sensor.poke({})
        if done:
            return done
        time.sleep(0.1)
    raise AssertionError("the sensor never finished")


@pytest.fixture
def standin(tmp_path: Path) -> Any:
    # Started as the docs advise replicas to be: a new label may name a version still loading.
    server = StandInServing(tmp_path / "models.config", poll=0.1, allow_unavailable_labels=True)
    yield server
    server.stop()


def test_the_served_sensor_waits_for_its_own_version_and_fails_with_tf_servings_error(
    standin: StandInServing, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_savedmodel.sensors.savedmodel import SavedModelServedSensor
    from airflow_savedmodel.tfserving import fetch_status
    from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

    target = ServingTarget(resolve(str(standin.config)), "classifier", labels=("canary",))
    base = str(tmp_path / "classifier")
    assert fetch_status(standin.url, "classifier", 1).waiting_for() == "not known to the server yet"
    first = publish(model(tmp_path, "good"), base, serving=target)
    sensor = SavedModelServedSensor(
        task_id="served", server_url=standin.url, model_name="classifier", version=str(first.version)
    )
    done = poke_until(sensor)
    assert done.xcom_value == {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
    with urllib.request.urlopen(f"{standin.url}/v1/models/classifier/versions/1/metadata") as answer:
        signatures = json.loads(answer.read())["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert (
        fetch_status(standin.url, "classifier", version_label := None, "canary").version == 1
        and not version_label
    )

    # No label this time: TF Serving refuses a config moving canary to a version it has not loaded.
    second = publish(
        model(tmp_path, "broken", broken=True), base, serving=ServingTarget(target.config, "classifier")
    )
    trigger = SavedModelServedTrigger(standin.url, "classifier", version=second.version, poke_interval=0.1)
    path, kwargs = trigger.serialize()
    assert path.endswith("SavedModelServedTrigger") and kwargs["version"] == 2
    event = asyncio.run(asyncio.wait_for(trigger.run().__anext__(), 60))
    assert event.payload["status"] == "success" and event.payload["served"]["state"] == "END"
    deferred = SavedModelServedSensor(
        task_id="served2", server_url=standin.url, model_name="classifier", version=2
    )
    with pytest.raises(AirflowFailException) as failed:
        deferred.execute_complete({}, event.payload)
    message = str(failed.value)
    assert message.startswith(f"TF Serving at {standin.url} reports classifier version 2 END: NOT_FOUND: ")
    assert "Op type not registered 'NoSuchOp'" in message


def test_an_unreachable_server_is_waited_for_not_failed(tmp_path: Path) -> None:
    from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

    async def scenario() -> bool:
        trigger = SavedModelServedTrigger("http://127.0.0.1:9", "classifier", version=1, poke_interval=0.05)
        waiting = asyncio.create_task(trigger.run().__anext__())
        await asyncio.sleep(1.5)
        finished = waiting.done()
        waiting.cancel()
        return finished

    assert asyncio.run(scenario()) is False


def test_signatures_compared_with_what_a_running_server_serves(
    standin: StandInServing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_savedmodel.cli import main
    from airflow_savedmodel.format.validate import Checks
    from airflow_savedmodel.sensors.savedmodel import SavedModelServedSensor
    from airflow_savedmodel.storage.export import export
    from airflow_savedmodel.tfserving import fetch_signatures

    target = ServingTarget(resolve(str(standin.config)), "classifier", labels=("stable",))
    publish(model(tmp_path, "good"), str(tmp_path / "classifier"), serving=target)
    poke_until(
        SavedModelServedSensor(
            task_id="s", server_url=standin.url, model_name="classifier", version_label="stable"
        )
    )
    served = f"{standin.url}/v1/models/classifier/labels/stable"
    baseline = fetch_signatures(served)
    assert baseline.signatures["serving_default"].inputs["x"].dtype == "DT_FLOAT"
    assert baseline.signatures["serving_default"].inputs["x"].shape == (-1, 4)

    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    renamed = export_dense_model(str(tmp_path / "renamed"), [layer], input_key="features")
    assert main(["diff", served, renamed]) == 1
    out = capsys.readouterr().out
    assert f"{served} -> {renamed}\n" in out and "BREAKING: input 'x' of 'serving_default' removed" in out
    refused = export(
        resolve(renamed), resolve(str(tmp_path / "classifier")), checks=Checks(), compatible_with=baseline
    )
    assert refused.published is None and refused.report is not None
    assert f"signatures compatible with {served}" in refused.report.checks
    assert set(refused.report.codes()) == {"signature-breaking-change"}
    # validate and export take what diff takes: the server's URL, a base path, "served"
    assert (
        main(["validate", renamed, "--compatible-with", served, "--required-signature", "serving_default"])
        == 1
    )
    out = capsys.readouterr().out
    assert "signature-breaking-change" in out and f"signatures compatible with {served}" in out
    base = str(tmp_path / "classifier")
    assert main(["validate", renamed, "--compatible-with", base]) == 1
    assert "signature-breaking-change" in capsys.readouterr().out
    assert (
        main(
            [
                "export",
                renamed,
                base,
                "--compatible-with",
                "served",
                "--serving-config",
                str(standin.config),
                "--model-name",
                "classifier",
            ]
        )
        == 1
    )
    assert "signature-breaking-change" in capsys.readouterr().out
