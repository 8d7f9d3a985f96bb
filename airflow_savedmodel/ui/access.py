"""Who may see which model, as Airflow's auth manager decides: a model's pages need read access
to every DAG that published it (or, before any publish, every DAG that acts on it) and to the
connection its storage is read with; a model named by neither needs read access to its Assets.
The forms linked from a model are those of the DAGs the user may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from airflow_savedmodel.ui.known import KnownModel


def visible(models: Sequence[KnownModel], user: Any) -> list[KnownModel]:
    """The models ``user`` may see, each with only the actions of DAGs they may read."""
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    dags = manager.get_authorized_dag_ids(user=user, method="GET")
    conn_ids = {m.conn_id for m in models if m.conn_id}
    conns = manager.filter_authorized_connections(conn_ids=conn_ids, user=user) if conn_ids else set()
    out = []
    for model in models:
        if model.conn_id and model.conn_id not in conns:
            continue
        needed = model.dags
        if needed and not needed <= dags:
            continue
        if not needed and not _may_read_assets(manager, user, model.asset_ids):
            continue
        mine = [a for a in model.actions if a.dag_id in dags]
        out.append(
            replace(model, actions=mine, publishers=set(model.publishers), asset_ids=set(model.asset_ids))
        )
    return out


def _may_read_assets(manager: Any, user: Any, asset_ids: set[int]) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    return bool(asset_ids) and all(
        manager.is_authorized_asset(method="GET", details=AssetDetails(id=str(i)), user=user)
        for i in asset_ids
    )
