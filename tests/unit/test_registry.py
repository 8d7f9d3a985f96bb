"""The registry's read model of a served model (release/registry.py), on local storage: versions
with their states (a partial one with its reason), labels and signing, the config entry, the
releases and one release's evidence; and that it reads the catalog and the records, not every
version's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow_savedmodel.errors import NotFoundError
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.release import records, registry
from airflow_savedmodel.signing.keys import Signer
from airflow_savedmodel.storage import model_config, publish
from airflow_savedmodel.storage.publish import ServingTarget

from signing_keys import key_pair
from stores import make_model


@pytest.fixture
def served(tmp_path: Path) -> registry.ModelRef:
    config = resolve(str(tmp_path / "models.config"))
    base = resolve(str(tmp_path / "ranker"))
    gate = ServingTarget(config, "ranker")
    signer = Signer.from_pem(key_pair(tmp_path / "keys", "release").private_pem)
    publish(make_model(tmp_path, 1), base, serving=gate)
    publish(make_model(tmp_path, 2), base, serving=gate, signer=signer)
    publish(make_model(tmp_path, 3), base, serving=gate)
    model_config.set_labels(config, "ranker", base, {"stable": 1, "canary": 2})
    shutil.rmtree(Path(base.path) / "3" / "variables")  # a partial version
    records.write(
        base,
        {
            "version": 2,
            "model": "ranker",
            "state": "rolled_back",
            "run_id": "r1",
            "started": "2026-12-06T07:00:00+00:00",
            "decided": "2026-12-06T07:05:00+00:00",
            "message": "rolled back version 2: outputs failed",
            "stable_before": 1,
            "stable_after": 1,
            "checks": [
                {
                    "name": "outputs:serving_default/y",
                    "status": "fail",
                    "observed": 0.5,
                    "threshold": 0.05,
                    "message": "10 of 20 differ",
                },
                {
                    "name": "replica:a:1:error_rate",
                    "status": "pass",
                    "observed": 0.0,
                    "threshold": 0.0,
                    "message": "ok",
                    "replica": "a:1",
                },
            ],
        },
    )
    records.write_bake(
        base,
        2,
        {
            "at": [0.0, 0.1],
            "replica": ["a:1", "a:1"],
            "canary_ms": [2.0, 3.0],
            "stable_ms": [2.5, 2.5],
            "canary_error": [False, False],
            "stable_error": [False, False],
            "differs": [True, False],
        },
    )
    return registry.find([config], resolve, "ranker")


def test_a_models_page_lists_its_versions_labels_and_releases(
    served: registry.ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = model_config.read
    monkeypatch.setattr(
        model_config, "read", lambda where, **kw: reads.append(where.url) or real(where, **kw)
    )
    page = registry.model_page(served)
    assert reads == []  # the entry found with the model is the one shown: the config is not read again
    rows = {v["version"]: v for v in page["versions"]}
    assert [v["version"] for v in page["versions"]] == [3, 2, 1]  # newest first
    assert rows[1]["labels"] == ["stable"] and rows[2]["labels"] == ["canary"] and rows[2]["signed"]
    assert rows[1]["state"] == "complete" and not rows[1]["signed"] and rows[1]["bytes"] > 0
    assert rows[3]["state"] == "partial" and rows[3]["problems"], rows[3]  # with its reason
    assert page["entry"]["labels"] == {"canary": 2, "stable": 1}
    assert 'name: "ranker"' in page["entry_text"] and "version_labels" in page["entry_text"]
    (release,) = page["releases"]
    assert release["state"] == "rolled_back" and release["failed"] == ["outputs:serving_default/y"]
    assert release["replicas"] == ["a:1"]
    assert registry.signer(served, 2).startswith("key sha256:") and registry.signer(served, 1) is None


def test_the_overview_and_one_releases_evidence(served: registry.ModelRef) -> None:
    summary = registry.overview(served)
    assert (summary["newest"], summary["partial"], summary["labels"]) == (2, [3], {"canary": 2, "stable": 1})
    assert summary["last_release"]["version"] == 2 and summary["last_release"]["state"] == "rolled_back"
    page = registry.release_page(served, 2)
    assert [c["name"] for c in page["checks"]] == ["outputs:serving_default/y"]
    assert page["replica_checks"] == {
        "a:1": [
            {
                "name": "error_rate",
                "status": "pass",
                "observed": 0.0,
                "threshold": 0.0,
                "message": "ok",
                "replica": "a:1",
            }
        ]
    }
    assert page["bake"]["differs"] == [True, False]
    with pytest.raises(NotFoundError, match="no release recorded for version 1"):
        registry.release_page(served, 1)
    with pytest.raises(NotFoundError, match="no model named 'other'"):
        registry.find([served.config], resolve, "other")


def test_the_signature_diff_between_two_versions(served: registry.ModelRef, tmp_path: Path) -> None:
    import numpy as np

    layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
    renamed = export_dense_model(str(tmp_path / "renamed"), [layer], input_key="features")
    publish(renamed, served.base)
    changes = registry.signature_diff(served, 1, 4)
    assert any(c["breaking"] for c in changes), changes
    assert registry.signature_diff(served, 1, 2) == []
