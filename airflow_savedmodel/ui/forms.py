"""The fields of a DAG's trigger form as the Models view shows it: the DAG's params (their type,
title, description and default, from its serialized form), with the values that act on one
model filled in. Airflow 3.3's own form takes no values from its URL, so the view shows this
one and triggers the run through Airflow's REST API as the user (Airflow's permissions,
validation of the params and audit log apply as they do to its own form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_KINDS = ("boolean", "integer", "number", "string")


@dataclass(frozen=True)
class Field:
    """One param as an input: ``kind`` is boolean, integer, number, string or json."""

    name: str
    title: str
    description: str
    kind: str
    nullable: bool
    value: Any
    filled: bool  # set for this model, not the DAG's default


def _plain(value: Any) -> Any:
    """A serialized default as its value (Airflow wraps dicts and the like as ``__var``)."""
    if isinstance(value, Mapping) and "__var" in value:
        return _plain(value["__var"])
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def fields(params: Sequence[Any], filled: Mapping[str, Any]) -> list[Field]:
    """The form's fields, in the DAG's order, ``filled`` overriding the defaults."""
    out = []
    for item in params:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], Mapping)):
            continue
        name, param = str(item[0]), item[1]
        schema = _plain(param.get("schema") or {})
        types = schema.get("type", "string")
        types = [types] if isinstance(types, str) else list(types)
        kind = next((t for t in types if t in _KINDS), "json" if types else "string")
        value = filled[name] if name in filled else _plain(param.get("default"))
        out.append(
            Field(
                name=name,
                title=str(schema.get("title") or name),
                description=str(param.get("description") or ""),
                kind=kind,
                nullable="null" in types,
                value=value,
                filled=name in filled,
            )
        )
    return out
