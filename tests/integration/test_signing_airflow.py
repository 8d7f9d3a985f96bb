"""Signing inside real Airflow: the signing key from a connection (masked, never in XCom), one
deployment setting (``[savedmodel] require_signature``) turning verification on for every
operator and sensor, a version tampered with after signing refused by the label operator and
the mirror with the serving config left as it was, and the version sensor passing it over."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage import model_config

from integration.servers import Store
from integration.test_airflow import run_dag, small_model, states, task_dag
from signing_keys import key_pair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def forge(version: Path) -> None:
    """Change a byte of the version's variables and rewrite its crc32c manifest to match."""
    shard = version / "variables" / "variables.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[0] ^= 0x01
    shard.write_bytes(bytes(data))
    where = resolve(str(version))
    manifests.write(where.fs, where.path, manifests.scan(where.fs, where.path))


def test_signing_and_required_signatures_through_operators_and_sensors(
    airflow_db: str,
    tmp_path: Path,
    gcs: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow.sdk.log import redact

    from airflow_savedmodel.operators.savedmodel import (
        SavedModelExportOperator,
        SavedModelMirrorOperator,
        SavedModelPublishOperator,
        SavedModelServingLabelOperator,
    )
    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor, SavedModelVersionSensor

    keys = key_pair(tmp_path / "keys", "release", password=b"k3y-pass")
    pem = keys.private_pem.decode()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SM_SIGNING",
        json.dumps(
            {
                "conn_type": "generic",
                "password": pem,
                # Files signed in 256-byte shards (as the UI stores extras: text).
                "extra": {"key_password": "k3y-pass", "shard_size": "256"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SM_GCS",
        json.dumps({"conn_type": "savedmodel", "extra": {"storage_options": gcs.options}}),
    )
    monkeypatch.setenv("AIRFLOW__SAVEDMODEL__REQUIRE_SIGNATURE", str(keys.public))  # the whole deployment
    bucket = gcs.bucket()
    base, config = tmp_path / "serving" / "ranker", tmp_path / "serving" / "models.config"
    src = small_model(tmp_path, 3)

    with task_dag("test_savedmodel_signing") as dag:
        export = SavedModelExportOperator(
            task_id="export",
            model_url=src,
            base_path=str(base),
            serving_config=str(config),
            model_name="ranker",
            version_labels=["canary"],
            signing_conn_id="sm_signing",
        )
        to_gcs = SavedModelPublishOperator(
            task_id="to_gcs",
            model_url=str(base / "1"),
            base_path=f"{bucket}/serving",
            dest_conn_id="sm_gcs",
            signing_conn_id="sm_signing",
        )
        wait_version = SavedModelVersionSensor(
            task_id="wait_version", base_path=str(base), deferrable=True, poke_interval=0.2, timeout=60
        )
        wait_gcs = SavedModelSensor(
            task_id="wait_gcs",
            model_url=f"{bucket}/serving/1",
            savedmodel_conn_id="sm_gcs",
            poke_interval=0.2,
            timeout=30,
        )
        promote = SavedModelServingLabelOperator(
            task_id="promote", serving_config=str(config), model_name="ranker", action="promote"
        )
        mirror = SavedModelMirrorOperator(
            task_id="mirror", base_path=str(base), mirror_base_path=str(tmp_path / "mirror")
        )
        export >> [to_gcs, wait_version] >> promote >> mirror
        to_gcs >> wait_gcs

    run = run_dag(dag)
    assert set(states(run).values()) == {"success"}, states(run)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    signer = tis["export"].xcom_pull(task_ids="export")["signed_by"]
    assert signer.startswith("key sha256:")
    bundle = json.loads((base / "1" / "model.sig").read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicate"]["serialization"]["shard_size"] == 256
    assert any(r["name"].endswith(":256:512") for r in statement["predicate"]["resources"])
    assert tis["to_gcs"].xcom_pull(task_ids="to_gcs")["signed_by"] == signer
    assert tis["wait_version"].xcom_pull(task_ids="wait_version")["signed_by"] == signer
    assert tis["wait_gcs"].xcom_pull(task_ids="wait_gcs")["signed_by"] == signer
    every_xcom = json.dumps([tis[t].xcom_pull(task_ids=t) for t in tis])
    assert "PRIVATE KEY" not in every_xcom and "k3y-pass" not in every_xcom
    key_line = pem.splitlines()[1]
    assert key_line not in str(redact(f"the key: {pem}")) and "k3y-pass" not in str(redact("pw k3y-pass"))
    assert model_config.describe(
        model_config.find(model_config.read(resolve(str(config))), "ranker")
    ).labels == {  # type: ignore[arg-type]
        "canary": 1,
        "stable": 1,
    }

    # A bucket writer changes version 1 after it was signed (its crc32c manifest forged).
    forge(base / "1")
    before = config.read_bytes()
    with task_dag("test_savedmodel_signing_refused") as refused:
        SavedModelServingLabelOperator(
            task_id="set_stable",
            serving_config=str(config),
            model_name="ranker",
            action="set",
            version_label="stable",
            version=1,
        )
        SavedModelMirrorOperator(
            task_id="mirror_again", base_path=str(base), mirror_base_path=str(tmp_path / "mirror2")
        )
    capsys.readouterr()
    after = run_dag(refused)
    assert states(after) == {"set_stable": "failed", "mirror_again": "failed"}, states(after)
    said = capsys.readouterr()
    told = said.out + said.err
    assert "SignedContentError" in told and "variables/variables.data-00000-of-00001: content changed" in told
    assert config.read_bytes() == before
    assert not any((tmp_path / "mirror2").glob("[0-9]*"))

    # The version sensor passes the changed version over and names why.
    sensor = SavedModelVersionSensor(task_id="v", base_path=str(base), poke_interval=0.1, timeout=1)
    assert sensor.poke({}) is False and sensor._refused_up_to == 1
    from airflow_savedmodel.errors import SignedContentError

    exact = SavedModelSensor(task_id="m", model_url=str(base / "1"))
    with pytest.raises(
        SignedContentError, match=r"variables/variables\.data-00000-of-00001: content changed"
    ):
        exact.poke({})
