"""Which models Airflow knows, from its own records: the Asset events our publishes emit (their
extra names the serving config and the connection the destination is read with, and the event
names the DAG that published), and the DAGs whose SavedModel operators name a model in a
serving config (their trigger forms act on it). Pure functions over rows the caller queried.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Our operators whose form acts on a served model, and what the act is called on the pages.
ACTIONS = {
    "SavedModelRolloutOperator": "rollout",
    "SavedModelServingLabelOperator": "label",
    "SavedModelExportOperator": "publish",
    "SavedModelPublishOperator": "publish",
}
_PARAM = re.compile(r"^\{\{\s*params\.(\w+)\b[^}]*\}\}$")


@dataclass(frozen=True)
class Event:
    """One Asset event as the view needs it."""

    asset_id: int
    extra: Mapping[str, Any]
    source_dag_id: str | None
    timestamp: str


@dataclass(frozen=True)
class Action:
    """A DAG whose form acts on a model: what it does, and which of its params to fill in (param
    name -> ``model_name``, ``serving_config`` or ``version``)."""

    dag_id: str
    kind: str
    prefill: tuple[tuple[str, str], ...]

    def conf(self, model: KnownModel, version: int | None = None) -> dict[str, Any]:
        """The form's values for ``model`` (and ``version`` where the form takes one)."""
        values: dict[str, Any] = {
            "model_name": model.name,
            "serving_config": model.config,
            "version": version,
        }
        return {param: values[what] for param, what in self.prefill if values[what] is not None}

    @property
    def takes_version(self) -> bool:
        return any(what == "version" for _, what in self.prefill)


@dataclass
class KnownModel:
    """A model in a serving config, with the DAGs that published it and those that act on it."""

    config: str
    name: str
    conn_id: str | None = None
    asset_ids: set[int] = field(default_factory=set)
    publishers: set[str] = field(default_factory=set)
    actions: list[Action] = field(default_factory=list)
    last_published: str | None = None

    @property
    def id(self) -> str:
        """A stable id for URLs: the name, and a digest telling apart same-named models."""
        digest = hashlib.sha256(f"{self.config}#{self.name}".encode()).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.name)}-{digest}"

    @property
    def dags(self) -> set[str]:
        """The DAGs whose read access the model's pages need: those that published it; for a
        model no publish has named yet, those whose operators act on it."""
        return set(self.publishers) if self.publishers else {a.dag_id for a in self.actions}


def same_place(a: str, b: str) -> bool:
    """Whether two spellings of a config's location name the same file (``file://`` and
    trailing slashes aside)."""

    def plain(url: str) -> str:
        return url.removeprefix("file://").rstrip("/")

    return plain(a) == plain(b)


def from_events(events: Iterable[Event]) -> dict[tuple[str, str], KnownModel]:
    """The models our publishes' events name, keyed by (serving config, model name)."""
    out: dict[tuple[str, str], KnownModel] = {}
    for event in events:
        config = event.extra.get("serving_config")
        served = event.extra.get("served")
        if not isinstance(config, str) or not isinstance(served, Mapping) or not served.get("name"):
            continue
        key = _key(out, config, str(served["name"]))
        model = out.setdefault(key, KnownModel(config=config, name=str(served["name"])))
        model.asset_ids.add(event.asset_id)
        if event.source_dag_id:
            model.publishers.add(event.source_dag_id)
        conn_id = event.extra.get("savedmodel_conn_id")
        if isinstance(conn_id, str) and conn_id:
            model.conn_id = conn_id  # the newest event's: events come oldest first
        if model.last_published is None or event.timestamp > model.last_published:
            model.last_published = event.timestamp
    return out


def _key(known: Mapping[tuple[str, str], KnownModel], config: str, name: str) -> tuple[str, str]:
    for existing, model in known.items():
        if model.name == name and same_place(model.config, config):
            return existing
    return (config, name)


def _resolve(raw: Any, params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A templated field's value as a form would give it: (the value, the param it comes from)."""
    if not isinstance(raw, str) or not raw:
        return None, None
    match = _PARAM.match(raw.strip())
    if match:
        name = match.group(1)
        default = params.get(name)
        return (str(default) if default not in (None, "") else None), name
    if "{{" in raw:
        return None, None  # computed at run time: the view cannot tell
    return raw, None


def params_of(serialized: Mapping[str, Any]) -> dict[str, Any]:
    """A serialized DAG's params: name -> default."""
    out: dict[str, Any] = {}
    for item in serialized.get("params") or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], Mapping):
            out[str(item[0])] = item[1].get("default")
    return out


def actions_of(dag_id: str, serialized: Mapping[str, Any]) -> list[tuple[str, str, Action]]:
    """What a serialized DAG's SavedModel operators act on: (serving config, model name, action)
    for each operator whose config and model the form's defaults name."""
    dag = serialized.get("dag", serialized)
    params = params_of(dag)
    out = []
    for task in dag.get("tasks") or []:
        fields = task.get("__var", task) if isinstance(task, Mapping) else {}
        kind = ACTIONS.get(str(fields.get("task_type") or fields.get("_task_type") or ""))
        if kind is None:
            continue
        config, config_param = _resolve(fields.get("serving_config"), params)
        name, name_param = _resolve(fields.get("model_name"), params)
        if not config or not name:
            continue
        prefill = [
            (p, what) for p, what in ((name_param, "model_name"), (config_param, "serving_config")) if p
        ]
        _, version_param = _resolve(fields.get("version"), params)
        if version_param is None and "version" in params:
            version_param = "version"  # the DAG's candidate comes from its Version field
        if version_param:
            prefill.append((version_param, "version"))
        out.append((config, name, Action(dag_id, kind, tuple(prefill))))
    return out


_PRIORITY = ("publish", "rollout", "label")  # what a DAG that does several is called by


def known_models(events: Iterable[Event], dags: Iterable[tuple[str, Mapping[str, Any]]]) -> list[KnownModel]:
    """Every model the events and the DAGs name, by name then config; one form per DAG and
    model (a DAG that publishes and then moves a label is a publishing DAG)."""
    found = from_events(events)
    for dag_id, serialized in dags:
        for config, name, action in actions_of(dag_id, serialized):
            key = _key(found, config, name)
            model = found.setdefault(key, KnownModel(config=config, name=name))
            same = next((a for a in model.actions if a.dag_id == dag_id), None)
            if same is None:
                model.actions.append(action)
                continue
            kind = min(same.kind, action.kind, key=_PRIORITY.index)
            prefill = tuple(dict.fromkeys(same.prefill + action.prefill))
            model.actions[model.actions.index(same)] = Action(dag_id, kind, prefill)
    return sorted(found.values(), key=lambda m: (m.name, m.config))
