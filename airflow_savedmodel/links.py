"""Extra links on the task page: the version a publishing task wrote, in its store's console.

Airflow 3 resolves a link in the worker right after ``execute()`` and keeps the URL in XCom;
the link reads the task's return value (``{"uri": ...}``), so it needs no state of its own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink


def console_url(uri: str | None) -> str:
    """The web console page of a gs:// or s3:// directory; "" for stores without one."""
    if not uri or "://" not in uri:
        return ""
    scheme, rest = uri.split("://", 1)
    bucket, _, path = rest.partition("/")
    path = path.strip("/")
    if scheme in ("gs", "gcs"):
        return f"https://console.cloud.google.com/storage/browser/{quote(bucket)}/{quote(path)}"
    if scheme in ("s3", "s3a", "s3n"):
        prefix = quote(f"{path}/" if path else "")
        return f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}?prefix={prefix}"
    return ""


class SavedModelPublishedLink(BaseOperatorLink):
    """ "Published version": the directory the task published (or copied) the model to."""

    name = "Published version"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom  # the worker's XCom, only when resolving

        value = XCom.get_value(key="return_value", ti_key=ti_key)
        return console_url(value.get("uri")) if isinstance(value, dict) else ""
