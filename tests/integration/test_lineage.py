"""OpenLineage events of the operators, as Airflow's OpenLineage listener emits them (file
transport), read back and checked field by field: datasets named as the spec names each store
(file, gs://bucket, s3://bucket) and the ``savedmodel`` facet's version, fingerprint and
signature hash equal to what the published model's fingerprint.pb says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.model import read_fingerprint
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve

from integration.servers import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
HERE = Path(__file__).resolve().parent
SCHEMA = "urn:airflow-provider-savedmodel:openlineage:SavedModelDatasetFacet:1"


def events_by_task(path: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE event of each task, by task id."""
    out = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        job = event["job"]["name"]
        if event["eventType"] == "COMPLETE" and "." in job:
            out[job.split(".", 1)[1]] = event
    return out


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    found = []
    for d in event[side]:
        facet = d.get("facets", {}).get("savedmodel")
        if facet is not None:
            assert facet.pop("_schemaURL") == SCHEMA and facet.pop("_producer")
        found.append((d["namespace"], d["name"], facet))
    return found


def singleprint(url: str, options: dict[str, Any]) -> tuple[str, str]:
    fs, path = resolve(url, options)
    fp = read_fingerprint(fs, path)
    assert fp is not None
    hashes = (
        fp.graph_def_program_hash,
        fp.signature_def_hash,
        fp.saved_object_graph_hash,
        fp.checkpoint_hash,
    )
    return "/".join(map(str, hashes)), str(fp.signature_def_hash)


def test_operators_emit_openlineage_datasets_with_the_model_facet(
    tmp_path: Path, gcs: Store, s3: Store
) -> None:
    rng = np.random.default_rng(3)
    layer = DenseLayer(rng.standard_normal((4, 2)).astype(np.float32), np.zeros(2, np.float32), "softmax")
    src = export_dense_model(str(tmp_path / "src"), [layer])
    gs_bucket, s3_bucket = gcs.bucket(), s3.bucket()
    where = {
        "src": src,
        "stripped": str(tmp_path / "stripped"),
        "local_base": str(tmp_path / "serving"),
        "gs_base": f"{gs_bucket}/models/ranker",
        "s3_base": f"{s3_bucket}/models/ranker",
    }
    events = tmp_path / "events.jsonl"
    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "savedmodel-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW_CONN_GCS": json.dumps(
            {"conn_type": "savedmodel", "extra": {"storage_options": gcs.options}}
        ),
        "AIRFLOW_CONN_S3": json.dumps({"conn_type": "savedmodel", "extra": {"storage_options": s3.options}}),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    ran = subprocess.run(
        [sys.executable, str(HERE / "lineage_dag.py"), json.dumps(where)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    by_task = events_by_task(events)
    assert set(by_task) == {"validate", "strip", "publish_gcs", "publish_s3", "export", "taskflow_publish"}
    # A task that calls the hook itself reports what the hook read and wrote (hook lineage).
    assert datasets(by_task["taskflow_publish"], "inputs") == [("file", src, None)]
    assert datasets(by_task["taskflow_publish"], "outputs") == [
        ("file", f"{where['local_base']}-taskflow/1", None)
    ]
    assert datasets(by_task["validate"], "inputs") == [("file", src, {"valid": True, "findings": []})]
    assert datasets(by_task["validate"], "outputs") == []
    assert datasets(by_task["strip"], "inputs") == [("file", src, None)]
    assert datasets(by_task["strip"], "outputs") == [("file", where["stripped"], None)]

    gs_print, gs_hash = singleprint(f"{where['gs_base']}/1", gcs.options)
    assert datasets(by_task["publish_gcs"], "inputs") == [("file", where["stripped"], None)]
    assert datasets(by_task["publish_gcs"], "outputs") == [
        (gs_bucket, "models/ranker/1", {"version": 1, "fingerprint": gs_print, "signatureDefHash": gs_hash})
    ]
    s3_print, s3_hash = singleprint(f"{where['s3_base']}/7", s3.options)
    assert datasets(by_task["publish_s3"], "outputs") == [
        (s3_bucket, "models/ranker/7", {"version": 7, "fingerprint": s3_print, "signatureDefHash": s3_hash})
    ]
    local_print, local_hash = singleprint(f"{where['local_base']}/1", {})
    assert datasets(by_task["export"], "inputs") == [("file", src, {"valid": True, "findings": []})]
    assert datasets(by_task["export"], "outputs") == [
        (
            "file",
            f"{where['local_base']}/1",
            {"version": 1, "fingerprint": local_print, "signatureDefHash": local_hash},
        )
    ]
    assert all(e["job"]["namespace"] == "savedmodel-tests" for e in by_task.values())
