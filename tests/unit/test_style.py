"""Lint, format and type checks run with the tests, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_operator_and_sensor_argument_is_documented() -> None:
    """The providers' convention: a ``:param name:`` line for each constructor argument."""
    import inspect

    from airflow_savedmodel.operators import savedmodel as operators
    from airflow_savedmodel.sensors import savedmodel as sensors

    classes = [
        cls
        for module in (operators, sensors)
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and name.startswith("SavedModel")
        and cls.__module__.startswith("airflow_savedmodel.")
    ]
    assert len(classes) >= 8
    missing = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self"
        and parameter.kind is not parameter.VAR_KEYWORD
        and f":param {name}:" not in (cls.__doc__ or "")
    ]
    assert missing == []


def test_every_finding_code_is_documented_in_the_reference() -> None:
    from airflow_savedmodel.format.validate import FINDING_CODES

    reference = (ROOT / "docs" / "reference.md").read_text()
    assert [code for code in FINDING_CODES if code not in reference] == []


def test_every_error_class_is_in_the_one_hierarchy() -> None:
    """Errors are defined in airflow_savedmodel/errors.py only, each a SavedModelError: callers
    catch one hierarchy and read one module to know what can be raised."""
    import ast
    import inspect
    from pathlib import Path

    from airflow_savedmodel import errors

    package = Path(errors.__file__).parent
    elsewhere = [
        f"{path.relative_to(package)}:{node.lineno} {node.name}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "errors.py" and "protos" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception"))
    ]
    assert elsewhere == [], f"define errors in airflow_savedmodel/errors.py: {elsewhere}"
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 20 and all(issubclass(c, errors.SavedModelError) for c in classes), classes


def test_every_public_hook_method_documents_its_parameters() -> None:
    import inspect

    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.hooks.tfserving import TFServingHook

    deprecated = {"tf_serving_endpoint", "served_status"}  # delegates to TFServingHook
    missing = [
        f"{hook.__name__}.{name}({parameter})"
        for hook in (SavedModelHook, TFServingHook)
        for name, method in inspect.getmembers(hook, inspect.isfunction)
        if not name.startswith("_")
        and name not in deprecated
        and method.__qualname__.startswith(hook.__name__)
        for parameter in inspect.signature(method).parameters
        if parameter not in ("self", "args", "kwargs", "options")
        and f":param {parameter}:" not in (method.__doc__ or "")
    ]
    assert missing == [], missing
