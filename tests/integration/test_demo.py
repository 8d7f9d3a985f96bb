"""`make demo` as a new user runs it: a virtualenv with only the runtime package (no TensorFlow,
no test tools), the training -> serving DAG on an embedded Airflow, what it prints, and the UI
command it prints (run in tests/integration/test_user_path.py, where the walk through the UI
starts with it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900), pytest.mark.xdist_group("demo")]


def test_make_demo_runs_the_training_dag_from_the_runtime_package_alone(demo: tuple[Path, Path, str]) -> None:
    venv, home, out = demo
    assert "DAG run finished: success" in out
    assert "serving config: classifier serves 1; labels: canary=1, stable=1" in out
    assert f"AIRFLOW_HOME={home} make ui DEMO_VENV={venv}" in out
    assert (
        f"log in as 'admin' with the password in {home}/simple_auth_manager_passwords.json.generated" in out
    )
    # What the demo shows of the task logs reads as text, not as raw structured-log records.
    assert "training accuracy" in out and "Serving config: classifier serves [1]" in out
    assert not [line for line in out.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\dT\S+ \[", line)], out
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    assert "apache-airflow==" in installed and "airflow-provider-savedmodel" in installed
    for test_only in ("tensorflow", "tensorflow-cpu", "moto", "mypy", "pytest", "selenium", "keras"):
        assert f"\n{test_only}==" not in f"\n{installed}", test_only
