"""One vocabulary: every parameter of the public operators, sensors, triggers and hooks, and every
command-line flag, is a name of docs/reference.md's "Names" table; every deprecated alias is listed
there, and still works with one warning naming its replacement."""

from __future__ import annotations

import argparse
import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPRECATED_METHODS = {"tf_serving_endpoint", "served_status"}  # SavedModelHook, moved to TFServingHook


def table() -> tuple[set[str], set[str], set[str]]:
    """(Python names, CLI flags and positionals, old names) of the Names table."""
    text = (ROOT / "docs" / "reference.md").read_text()
    section = text.split("## Names", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    cli: set[str] = set()
    old: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| Python", "| ---")):
            continue
        python, _, flags, aliases = (cell.strip() for cell in line.strip("|").split("|"))
        names |= set(re.findall(r"`([a-z_]+)`", python))
        cli |= set(re.findall(r"`(--[a-z-]+|[A-Z]+)`", flags))
        old |= set(re.findall(r"`([a-z_-]+)`", aliases))
    return names, cli, old


def public_callables() -> list[tuple[str, Any]]:
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.hooks.tfserving import TFServingHook
    from airflow_savedmodel.operators import savedmodel as operators
    from airflow_savedmodel.sensors import savedmodel as sensors
    from airflow_savedmodel.triggers import savedmodel as triggers

    found = []
    for module in (operators, sensors, triggers):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith("airflow_savedmodel.") and name.startswith("SavedModel"):
                found.append((name, cls.__init__))
    for hook in (SavedModelHook, TFServingHook):
        for name, method in inspect.getmembers(hook, inspect.isfunction):
            if (
                not name.startswith("_")
                and name not in DEPRECATED_METHODS
                and method.__qualname__.startswith(hook.__name__)
            ):
                found.append((f"{hook.__name__}.{name}", method))
    return found


def test_every_parameter_is_a_name_of_the_vocabulary() -> None:
    names, _, _ = table()
    checked = {where for where, _ in public_callables()}
    assert {
        "SavedModelCopyOperator",
        "SavedModelExportOperator",
        "SavedModelRolloutOperator",
        "SavedModelSensor",
        "SavedModelNewVersionTrigger",
        "SavedModelHook.publish",
        "TFServingHook.status",
    } <= checked, checked
    unknown = {
        f"{where}({parameter})"
        for where, fn in public_callables()
        for parameter in inspect.signature(fn).parameters
        if parameter not in ("self", "kwargs", "args", "options") and parameter not in names
    }
    assert unknown == set(), f"not in docs/reference.md's Names table: {sorted(unknown)}"


def test_every_deprecated_alias_is_listed_and_points_at_a_name() -> None:
    names, cli, old = table()
    aliases = {
        (where, alias, new)
        for where, fn in public_callables()
        for alias, new in getattr(fn, "__renamed__", {}).items()
    }
    assert len(aliases) >= 20
    assert {a for _, a, _ in aliases} <= old, sorted({a for _, a, _ in aliases} - old)
    assert {n for _, _, n in aliases} <= names
    from airflow_savedmodel.cli import RENAMED_FLAGS

    assert set(RENAMED_FLAGS) <= old, sorted(set(RENAMED_FLAGS) - old)
    assert {new for new, _ in RENAMED_FLAGS.values()} <= cli


def test_every_command_line_flag_is_in_the_vocabulary() -> None:
    from airflow_savedmodel.cli import build_parser

    _, cli, _ = table()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    unknown = set()
    for command, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            shown = [o for o in action.option_strings if o.startswith("--")] or [
                action.metavar or action.dest.upper()
            ]
            unknown |= {f"{command} {o}" for o in shown if o not in cli and o != "--help"}
    assert unknown == set(), f"not in docs/reference.md's Names table: {sorted(unknown)}"


def test_a_dag_written_with_the_old_names_parses_and_warns_once_per_name() -> None:
    """Operators and sensors built with their old keyword names get the new attributes, with one
    deprecation warning per old name; the hook's old keyword names still work."""
    import datetime

    from airflow.exceptions import AirflowProviderDeprecationWarning
    from airflow.sdk import DAG

    from airflow_savedmodel import deprecation
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.operators.savedmodel import (
        SavedModelCopyOperator,
        SavedModelExportOperator,
        SavedModelPublishOperator,
        SavedModelRolloutOperator,
        SavedModelValidateOperator,
    )
    from airflow_savedmodel.sensors.savedmodel import SavedModelSensor
    from airflow_savedmodel.triggers.savedmodel import SavedModelTrigger

    deprecation._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with DAG("old_names", schedule=None, start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)):
            validate = SavedModelValidateOperator(task_id="v", url="/m/1")
            SavedModelValidateOperator(task_id="v2", url="/m/2")  # warned once already
            copy = SavedModelCopyOperator(task_id="c", src="/m/1", dst="/backup/1")
            publish = SavedModelPublishOperator(
                task_id="p", src="/m/1", base_path="/serving", labels=["canary"], require_signature="/k.pem"
            )
            export = SavedModelExportOperator(
                task_id="e",
                model_url="/m/1",
                base_path="/serving",
                warmup_inputs="/x.npz",
                warmup_signature="s",
            )
            rollout = SavedModelRolloutOperator(
                task_id="r",
                serving_config="/c",
                model_name="m",
                version=2,
                server_url="http://x",
                inputs="/x.npz",
            )
            sensor = SavedModelSensor(task_id="s", url="/m/1")
    said = [str(w.message) for w in caught if issubclass(w.category, AirflowProviderDeprecationWarning)]
    assert said == [
        "SavedModelValidateOperator: 'url' is deprecated; use 'model_url'",
        "SavedModelCopyOperator: 'src' is deprecated; use 'model_url'",
        "SavedModelCopyOperator: 'dst' is deprecated; use 'destination_url'",
        "SavedModelPublishOperator: 'src' is deprecated; use 'model_url'",
        "SavedModelPublishOperator: 'labels' is deprecated; use 'version_labels'",
        "SavedModelPublishOperator: 'require_signature' is deprecated; use 'trusted_signers'",
        "SavedModelExportOperator: 'warmup_inputs' is deprecated; use 'inputs_url'",
        "SavedModelExportOperator: 'warmup_signature' is deprecated; use 'signature_name'",
        "SavedModelRolloutOperator: 'inputs' is deprecated; use 'inputs_url'",
        "SavedModelSensor: 'url' is deprecated; use 'model_url'",
    ], said
    assert (validate.model_url, copy.model_url, copy.destination_url) == ("/m/1", "/m/1", "/backup/1")
    assert (publish.model_url, publish.version_labels, publish.trusted_signers) == (
        "/m/1",
        ["canary"],
        "/k.pem",
    )
    assert (export.inputs_url, export.signature_name, rollout.inputs_url) == ("/x.npz", "s", "/x.npz")
    assert sensor.model_url == "/m/1" and "model_url" in sensor.template_fields
    # A trigger serialized before the rename (its kwargs in the database) still deserializes.
    with pytest.warns(AirflowProviderDeprecationWarning) as old_trigger:
        trigger = SavedModelTrigger(url="/m/1", conn_id="c", poke_interval=5)
    assert [str(w.message) for w in old_trigger] == [
        "SavedModelTrigger: 'url' is deprecated; use 'model_url'",
        "SavedModelTrigger: 'conn_id' is deprecated; use 'savedmodel_conn_id'",
    ]
    assert (
        trigger.serialize()[1]["model_url"] == "/m/1" and trigger.serialize()[1]["savedmodel_conn_id"] == "c"
    )
    with pytest.raises(TypeError, match="SavedModelCopyOperator: missing keyword argument 'destination_url'"):
        SavedModelCopyOperator(task_id="c3", model_url="/m/1")
    with pytest.raises(TypeError, match="pass 'model_url' or its old name 'src', not both"):
        SavedModelCopyOperator(task_id="c4", model_url="/m/1", src="/m/2", destination_url="/d")
    with pytest.warns(AirflowProviderDeprecationWarning, match="'base' is deprecated; use 'base_path'"):
        assert SavedModelHook().versions(base="/nonexistent") == []


def test_old_command_line_flags_still_work_and_say_their_new_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_savedmodel.cli import main

    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "ranker" base_path: "/s/ranker" model_platform: "tensorflow" } }'
    )
    assert main(["serving", "show", str(config), "--model", "ranker"]) == 0
    out, err = capsys.readouterr()
    assert "serving config: ranker serves latest 1" in out
    assert err == "savedmodel serving: --model is deprecated; use --model-name\n"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("airflow_savedmodel.storage.serving", "airflow_savedmodel.storage.model_config"),
        ("airflow_savedmodel.storage.signatures", "airflow_savedmodel.storage.signed"),
    ],
)
def test_renamed_modules_still_import_from_their_old_path_with_a_warning(old: str, new: str) -> None:
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        before = importlib.import_module(old)
    after = importlib.import_module(new)
    public = [name for name in vars(after) if not name.startswith("_")]
    assert public and all(getattr(before, name) is getattr(after, name) for name in public)


def test_the_location_package_exports_what_each_of_its_modules_defines() -> None:
    """location.py became a package of modules by job; ``from airflow_savedmodel.location
    import X`` keeps working for every public name any of them defines."""
    import importlib
    import inspect
    import pkgutil

    import airflow_savedmodel.location as package

    defined = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        defined |= {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (getattr(value, "__module__", module.__name__) == module.__name__ or name.isupper())
            and not inspect.ismodule(value)
        }
    assert defined - {"annotations"} <= set(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)
    assert {"Location", "resolve", "write_atomic", "crc32c", "Listing", "scrub", "storage_error"} <= defined
