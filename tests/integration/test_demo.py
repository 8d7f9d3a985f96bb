"""`make demo` as a new user runs it: a virtualenv with only the runtime package (no TensorFlow,
no test tools), the training -> serving DAG on an embedded Airflow, and how to log in to the UI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_runs_the_training_dag_from_the_runtime_package_alone(tmp_path: Path) -> None:
    venv, home = tmp_path / "venv", tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "SAVEDMODEL_"))}
    env["AIRFLOW_HOME"] = str(home)
    done = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "DAG run finished: success" in out
    assert "serving config: classifier serves 1; labels: canary=1, stable=1" in out
    assert "log in as 'admin' with the password standalone prints" in out
    assert f"{home}/simple_auth_manager_passwords.json.generated" in out
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    assert "apache-airflow==" in installed and "airflow-provider-savedmodel" in installed
    for test_only in ("tensorflow", "tensorflow-cpu", "moto", "mypy", "pytest", "selenium", "keras"):
        assert f"\n{test_only}==" not in f"\n{installed}", test_only
