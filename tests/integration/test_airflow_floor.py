"""The lowest Airflow the package admits (pyproject's ``apache-airflow>=`` floor) works as the newest
does: in a fresh virtualenv with that release and the pins kept in tests/constraints/, every module
imports, every example DAG parses, and the training DAG runs with ``airflow dags test``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def floor() -> str:
    match = re.search(r'"apache-airflow>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert match, "pyproject.toml names no apache-airflow floor"
    return match.group(1)


def test_the_lowest_admitted_airflow_imports_parses_and_runs_the_examples(tmp_path: Path) -> None:
    release = floor()
    minor = ".".join(release.split(".")[:2])
    constraints = ROOT / "tests" / "constraints" / f"airflow-{minor}.txt"
    assert f"apache-airflow=={release}\n" in constraints.read_text(), f"{constraints} pins another release"
    venv = tmp_path / "venv"
    subprocess.run([str(BIN / "uv"), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            str(BIN / "uv"),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(constraints),
            f"apache-airflow=={release}",
            "-e",
            f"{ROOT}[openlineage,s3]",
        ],
        check=True,
    )
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "SAVEDMODEL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        SAVEDMODEL_DEMO_ROOT=str(tmp_path / "demo"),
    )
    python = str(venv / "bin" / "python")
    check = r"""
import importlib, pkgutil, sys
import airflow, airflow_savedmodel
assert airflow.__version__ == sys.argv[1], airflow.__version__
names = [m.name for m in pkgutil.walk_packages(airflow_savedmodel.__path__, "airflow_savedmodel.")
         if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
from airflow.dag_processing.dagbag import DagBag
sys.path.insert(0, sys.argv[2])  # as the dag-processor does: the DAGs import their settings module
bag = DagBag(sys.argv[2], include_examples=False)
assert not bag.import_errors, bag.import_errors
print(len(names), "modules;", len(bag.dags), "DAGs:", " ".join(sorted(bag.dags)))
"""
    done = subprocess.run(
        [python, "-c", check, release, str(ROOT / "dags")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    examples = len(list((ROOT / "dags").glob("example_*.py")))
    assert f"{examples} DAGs:" in done.stdout, done.stdout
    airflow = str(venv / "bin" / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [airflow, "dags", "test", "example_savedmodel_training_to_serving"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "state=success" in run.stdout + run.stderr, (
        run.stdout[-3000:] + run.stderr[-3000:]
    )
