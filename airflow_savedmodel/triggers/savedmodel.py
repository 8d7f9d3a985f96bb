"""Triggers for the deferrable SavedModel sensors: poll storage from the triggerer's event loop.

Each check runs in a worker thread (fsspec calls block), so the loop never stalls. Connection
details are fetched with the async API before polling; errors end the wait as an event the
sensor turns into a task failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


async def _filesystem(
    url: str, conn_id: str | None, storage_options: dict[str, Any] | None
) -> tuple[Any, str]:
    from airflow_savedmodel.hooks.savedmodel import (
        OBJECT_STORAGE_CONN_TYPES,
        SavedModelHook,
        storage_options_from_connection,
    )

    conn = await SavedModelHook.aget_connection(conn_id) if conn_id else None
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if conn is not None and scheme in OBJECT_STORAGE_CONN_TYPES.get(conn.conn_type or "", ()):
        hook = SavedModelHook(conn_id, storage_options)
        return await asyncio.to_thread(hook.filesystem, url)
    from airflow_savedmodel import location

    options = {
        **(storage_options_from_connection(conn) if conn is not None else {}),
        **(storage_options or {}),
    }
    return await asyncio.to_thread(location.resolve, url, options)


class SavedModelTrigger(BaseTrigger):
    """Fires when a complete, valid SavedModel exists at ``url``."""

    def __init__(
        self,
        url: str,
        conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        deep: bool = False,
        poke_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.conn_id = conn_id
        self.storage_options = storage_options
        self.deep = deep
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelTrigger",
            {
                "url": self.url,
                "conn_id": self.conn_id,
                "storage_options": self.storage_options,
                "deep": self.deep,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_savedmodel.storage.versions import model_readiness

        try:
            fs, path = await _filesystem(self.url, self.conn_id, self.storage_options)
            while True:
                ready = await asyncio.to_thread(model_readiness, fs, path, self.deep)
                if ready.done:
                    yield TriggerEvent({"status": "success", "model": ready.found})
                    return
                self.log.info(
                    "No complete SavedModel at %s yet: %s; next check in %ss",
                    self.url,
                    ready.waiting_for,
                    self.poke_interval,
                )
                await asyncio.sleep(self.poke_interval)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})


class SavedModelVersionTrigger(BaseTrigger):
    """Fires when ``base_path`` holds a complete version newer than ``newer_than``."""

    def __init__(
        self,
        base_path: str,
        newer_than: int | None = None,
        conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        poke_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.base_path = base_path
        self.newer_than = newer_than
        self.conn_id = conn_id
        self.storage_options = storage_options
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelVersionTrigger",
            {
                "base_path": self.base_path,
                "newer_than": self.newer_than,
                "conn_id": self.conn_id,
                "storage_options": self.storage_options,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_savedmodel.storage.versions import newer_version_readiness

        try:
            fs, path = await _filesystem(self.base_path, self.conn_id, self.storage_options)
            while True:
                found = await asyncio.to_thread(newer_version_readiness, fs, path, self.newer_than)
                if found.done:
                    yield TriggerEvent({"status": "success", "version": found.found})
                    return
                self.log.info(
                    "Waiting for a complete version under %s: %s; next check in %ss",
                    self.base_path,
                    found.waiting_for,
                    self.poke_interval,
                )
                await asyncio.sleep(self.poke_interval)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
