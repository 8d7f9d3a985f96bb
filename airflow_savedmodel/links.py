"""Extra links on the task page: the version a publishing task wrote, in its store's console.

Airflow 3 resolves a link in the worker right after ``execute()`` and keeps the URL in XCom;
the link reads the task's return value (``{"uri": ...}``), so it needs no state of its own.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from airflow_savedmodel.schemes import console_url


class SavedModelPublishedLink(BaseOperatorLink):
    """ "Published version": the directory the task published (or copied) the model to."""

    name = "Published version"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom  # the worker's XCom, only when resolving

        value = XCom.get_value(key="return_value", ti_key=ti_key)
        return console_url(value.get("uri")) if isinstance(value, dict) else ""
