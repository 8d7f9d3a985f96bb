"""Shared fixtures: the TensorFlow-written model zoo (built once per session) and its ground truth.

The zoo is cached under .cache/zoo-<hash of tf_zoo.py and TF version> so local reruns are fast;
CI starts from a clean checkout and builds it once.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

# Airflow reads its configuration when first imported, so the test installation is set up here,
# before any test module imports it: a private AIRFLOW_HOME (SQLite), the example DAGs, no
# Airflow examples, and the demo paths inside that home.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
sys.path.insert(0, str(ROOT / "dags"))  # as Airflow's dag processor and task runner do for the bundle
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["SAVEDMODEL_DEMO_ROOT"] = os.path.join(_AIRFLOW_HOME, "savedmodel-demo")
for _name in [n for n in os.environ if n.startswith("SAVEDMODEL_") and n != "SAVEDMODEL_DEMO_ROOT"]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def zoo() -> dict[str, Path]:
    """name -> path of each TensorFlow-written SavedModel (read-only: copy before modifying)."""
    from zoo_cache import built_zoo

    return built_zoo()


@pytest.fixture(scope="session")
def truth(zoo: dict[str, Path]) -> Any:
    """truth(name) -> what TensorFlow itself reads from that zoo model."""
    import tf_zoo

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = tf_zoo.truth(zoo[name])
        return cache[name]

    return get


@pytest.fixture
def model_copy(zoo: dict[str, Path], tmp_path: Path) -> Any:
    """model_copy(name) -> a private, modifiable copy of a zoo model."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(zoo[name], dst)
        return dst

    return copy


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata database in the session's AIRFLOW_HOME."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.db import resetdb

    resetdb()
    DagBundlesManager().sync_bundles_to_db()  # the dags-folder bundle the DAGs under test belong to
    return _AIRFLOW_HOME


TF_FIXTURES = {"zoo", "truth", "model_copy"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs TensorFlow-written models (the zoo) or TensorFlow itself
    ``tf``, so ``make test-fast`` (``-m "not tf and not integration"``) runs without them."""
    for item in items:
        uses_tf = bool(TF_FIXTURES & set(getattr(item, "fixturenames", ()))) or item.get_closest_marker(
            "interop"
        )
        if uses_tf:
            item.add_marker(pytest.mark.tf)
