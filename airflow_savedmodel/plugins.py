"""The provider's Airflow plugin: the Models view (its pages mounted on the API server and an
entry in the navigation, airflow_savedmodel/ui) and a fix that makes the connection list's
Test button work for ``savedmodel`` connections.

The list's Test button posts the stored connection with ``"port": 0`` when its port is empty
(``Number(null)`` in the UI), and the API refuses a port that differs from the stored one
("The host or port to test differs from the stored connection"). A ``savedmodel`` connection
has no port (the form hides it), so for that connection type alone a 0 or null port in a test
request is dropped before the API reads it: the request then tests the stored connection, as
the user meant. Nothing else is touched, and no other request is read.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from airflow.plugins_manager import AirflowPlugin

CONN_TYPE = "savedmodel"
TEST_PATH = "/api/v2/connections/test"

Scope = dict[str, Any]


def without_placeholder_port(body: bytes) -> bytes:
    """The test request's body with a placeholder port (0 or null) of a ``savedmodel``
    connection removed; any other body unchanged."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or document.get("conn_type") != CONN_TYPE:
        return body
    if "port" not in document or document["port"] not in (0, None):
        return body
    del document["port"]
    return json.dumps(document).encode()


class ConnectionTestPortMiddleware:
    """ASGI middleware applying :func:`without_placeholder_port` to connection test requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].endswith(TEST_PATH):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = without_placeholder_port(b"".join(chunks))
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        request = {"type": "http.request", "body": body, "more_body": False}
        await self.app({**scope, "headers": headers}, _replay([request], receive), send)


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A ``receive`` that hands out ``messages`` first, then the client's own."""
    pending = list(messages)

    async def replay() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replay


def on_api_server(argv: list[str] | None = None) -> bool:
    """Whether this process is Airflow's API server (the only one that mounts plugin apps;
    schedulers and workers load the plugin too and need not build them)."""
    args = sys.argv if argv is None else argv
    return "api-server" in args[1:2] or "api_server" in " ".join(args[:1])


def models_view() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Models view's app and its navigation entry (an iframe of ``/savedmodel/models``)."""
    from airflow_savedmodel.ui.pages import PREFIX, create_app

    apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "SavedModel models"}]
    views = [
        {
            "name": "Models",
            "href": f"{PREFIX}/models",
            "destination": "nav",
            "url_route": "savedmodel-models",
            "category": "browse",
        }
    ]
    return apps, views


class SavedModelPlugin(AirflowPlugin):
    """Registered through the ``airflow.plugins`` entry point."""

    name = "savedmodel"
    fastapi_apps, external_views = models_view() if on_api_server() else ([], [])
    fastapi_root_middlewares = [  # noqa: RUF012 (Airflow's plugin attribute)
        {
            "middleware": ConnectionTestPortMiddleware,
            "args": [],
            "kwargs": {},
            "name": "savedmodel connection test",
        }
    ]
