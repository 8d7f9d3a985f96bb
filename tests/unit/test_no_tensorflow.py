"""Runtime code never imports TensorFlow: every runtime module imports in a process that cannot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow.") or name == "keras":
            raise ImportError(f"runtime code imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
import airflow_savedmodel
names = [m.name for m in pkgutil.walk_packages(airflow_savedmodel.__path__, "airflow_savedmodel.")]
for name in names:
    if name != "airflow_savedmodel.__main__":
        importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
assert not leaked, leaked
print(len(names))
"""


def test_no_runtime_module_imports_tensorflow() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 10


def test_no_runtime_source_mentions_a_tensorflow_import() -> None:
    offenders = []
    for path in (ROOT / "airflow_savedmodel").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import tensorflow", "from tensorflow")):
                offenders.append(f"{path}: {stripped}")
    assert not offenders


LAYERS = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"format/storage imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
import airflow_savedmodel.format, airflow_savedmodel.storage
count = 0
for package in (airflow_savedmodel.format, airflow_savedmodel.storage):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
        count += 1
import airflow_savedmodel.cli
leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
assert not leaked, leaked
print(count)
"""


def test_format_and_storage_never_import_airflow() -> None:
    """Dependencies point down only: the format core, storage and the CLI work without Airflow."""
    result = subprocess.run([sys.executable, "-c", LAYERS], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 20
