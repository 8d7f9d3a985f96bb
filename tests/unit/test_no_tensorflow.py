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


COMMON_PATHS = r"""
import sys, tempfile
import numpy as np
from airflow_savedmodel.format import describe, dtypes
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.format.validate import validate
from airflow_savedmodel.storage import publish, verify
import airflow_savedmodel.cli
with tempfile.TemporaryDirectory() as tmp:
    rng = np.random.default_rng(0)
    url = export_dense_model(tmp + "/m", [DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))])
    with SavedModel.open(url) as model:
        describe.describe(model, None)
        model.variables().read("dense/kernel")
    assert validate(url, deep=True).valid
    assert verify(publish(url, tmp + "/serving").url).ok
assert "ml_dtypes" not in sys.modules, "a float32 model's common paths imported ml_dtypes"
assert str(dtypes.to_numpy(dtypes.from_name("bfloat16"))) == "bfloat16"  # imported when needed
assert "ml_dtypes" in sys.modules
assert "cryptography" not in sys.modules, "a publish without signing imported cryptography"
print("ok")
"""


def test_common_paths_never_import_ml_dtypes() -> None:
    """ml_dtypes takes seconds to import in some releases; only a model or array with one of its
    dtypes (bfloat16, float8, int4 ...) pays for it."""
    result = subprocess.run([sys.executable, "-c", COMMON_PATHS], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
