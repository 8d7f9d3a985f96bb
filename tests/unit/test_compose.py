"""docker-compose.yml holds together (no Docker engine runs here, so its structure is checked)."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_component_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {*AIRFLOW_SERVICES, "postgres", "redis", "gcs", "tensorflow-serving", "airflow-init"} <= set(
        services
    )
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-apiserver"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_images_are_pinned_and_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), name
        if name != "airflow-init":
            assert "healthcheck" in service, name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    dockerfile = (ROOT / "docker" / "Dockerfile.airflow").read_text()
    assert "FROM apache/airflow:3." in dockerfile and "latest" not in dockerfile


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def test_serving_path_is_shared_and_matches_the_dags(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    serving = services["tensorflow-serving"]
    flags = dict(a.split("=", 1) for a in serving["command"])
    assert "--model_base_path" not in flags  # gated: TF Serving loads what the config file names
    assert int(flags["--model_config_file_poll_wait_seconds"]) > 0
    config_file = flags["--model_config_file"]
    init = services["airflow-init"]["command"][-1]
    base = re.search(r'base_path: \\*"(/[^"\\]+)', init).group(1)  # the initial config's base path
    volume = _mounts(serving)["/models"]
    assert volume in compose["volumes"]
    for name in AIRFLOW_SERVICES:
        assert _mounts(services[name])["/models"] == volume, name
        assert _mounts(services[name])["/opt/airflow/dags"] == "./dags", name
    env = services["airflow-worker"]["environment"]
    assert env["SAVEDMODEL_SERVING_BASE"] == base
    assert env["SAVEDMODEL_SERVING_CONFIG"] == config_file
    for key, value in env.items():
        if key.startswith("SAVEDMODEL_"):
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    sys.modules.pop("savedmodel_demo_settings", None)
    settings = importlib.import_module("savedmodel_demo_settings")
    try:
        assert base == settings.SERVING_BASE
        assert settings.CONN_ID == "training_gcs" and settings.EXPORT_ROOT.startswith("gs://training/")
        assert (
            settings.TARGET_TF
            in __import__("airflow_savedmodel.format.opdefs", fromlist=["releases"]).releases()
        )
        serving_image_release = serving["image"].rsplit(":", 1)[1].rsplit(".", 1)[0]
        assert serving_image_release == settings.TARGET_TF  # validate against the release that serves
    finally:
        sys.modules.pop("savedmodel_demo_settings", None)
        os.environ.pop("SAVEDMODEL_SERVING_BASE", None)
