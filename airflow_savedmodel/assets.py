"""Airflow Assets for serving base paths: the URI a model's versions are published under."""

from __future__ import annotations

import os
from typing import Any


def asset_uri(base_path: str) -> str:
    """``gs://b/m`` stays as is; a local path becomes ``file:///abs/path`` (Assets need a scheme)."""
    if "://" in base_path:
        return base_path.rstrip("/")
    return "file://" + os.path.abspath(base_path).rstrip("/")


def savedmodel_asset(base_path: str, name: str | None = None) -> Any:
    """The Asset a publishing task lists in ``outlets`` and a serving DAG schedules on."""
    from airflow.sdk import Asset

    uri = asset_uri(base_path)
    return Asset(uri=uri, name=name or uri)
