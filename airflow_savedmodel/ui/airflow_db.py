"""The rows of Airflow's metadata database the Models view reads: our publishes' Asset events
and the latest serialized form of every DAG that uses a SavedModel operator. Queries only;
what they mean is in ``known``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_savedmodel.ui.known import ACTIONS, Event, KnownModel, known_models

_OPERATORS = tuple(ACTIONS)


def events(session: Any) -> list[Event]:
    """Every Asset event whose extra names a serving config (what our publishes emit), oldest
    first."""
    from airflow.models.asset import AssetEvent
    from sqlalchemy import select

    rows = session.execute(
        select(
            AssetEvent.asset_id, AssetEvent.extra, AssetEvent.source_dag_id, AssetEvent.timestamp
        ).order_by(AssetEvent.timestamp)
    ).all()
    return [
        Event(asset_id, extra, dag_id, str(stamp))
        for asset_id, extra, dag_id, stamp in rows
        if isinstance(extra, Mapping) and extra.get("serving_config")
    ]


def dags(session: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """(dag_id, serialized DAG) for each DAG whose latest version uses one of our operators that
    act on a model; a DAG version's tasks are read once per API server process."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from sqlalchemy import select

    active = list(session.scalars(select(DagModel.dag_id).where(DagModel.is_stale.is_(False))))
    out = []
    for row in SerializedDagModel.get_latest_serialized_dags(dag_ids=active, session=session):
        slim = _acting_tasks(str(row.id), row)
        if slim is not None:
            out.append((row.dag_id, slim))
    return out


_SLIM: dict[str, Mapping[str, Any] | None] = {}


def _acting_tasks(version_id: str, row: Any) -> Mapping[str, Any] | None:
    """The DAG's params and the tasks of our acting operators (None: it has none), kept per
    serialized version (its id changes whenever the DAG does)."""
    if version_id not in _SLIM:
        data = row.data or {}
        dag = data.get("dag", data)
        tasks = [
            t
            for t in dag.get("tasks") or []
            if isinstance(t, Mapping) and str((t.get("__var") or {}).get("task_type")) in _OPERATORS
        ]
        if len(_SLIM) > 4096:
            _SLIM.clear()
        _SLIM[version_id] = {"params": dag.get("params") or [], "tasks": tasks} if tasks else None
    return _SLIM[version_id]


def params(session: Any, dag_id: str) -> list[Any]:
    """The params of ``dag_id``'s latest serialized version, as Airflow stores them."""
    from airflow.models.serialized_dag import SerializedDagModel

    for row in SerializedDagModel.get_latest_serialized_dags(dag_ids=[dag_id], session=session):
        data = row.data or {}
        return list(data.get("dag", data).get("params") or [])
    return []


def models(session: Any) -> list[KnownModel]:
    """Every model Airflow knows (before access is checked)."""
    return known_models(events(session), dags(session))
