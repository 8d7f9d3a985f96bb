"""The provider's Airflow plugin: the connection list's Test button sends the stored connection
with ``"port": 0`` for an empty port; for ``savedmodel`` connections that placeholder is dropped
before Airflow's API compares it with the stored (empty) port. Nothing else changes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_savedmodel.plugins import (
    ConnectionTestPortMiddleware,
    SavedModelPlugin,
    without_placeholder_port,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"conn_type": "savedmodel", "connection_id": "c", "port": 0},
            {"conn_type": "savedmodel", "connection_id": "c"},
        ),
        ({"conn_type": "savedmodel", "port": None}, {"conn_type": "savedmodel"}),
        ({"conn_type": "savedmodel", "port": 8080}, {"conn_type": "savedmodel", "port": 8080}),
        ({"conn_type": "postgres", "port": 0}, {"conn_type": "postgres", "port": 0}),
    ],
)
def test_only_a_placeholder_port_of_our_connection_type_is_dropped(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert json.loads(without_placeholder_port(json.dumps(body).encode())) == expected


def test_bodies_that_are_not_json_objects_pass_unchanged() -> None:
    for raw in (b"", b"not json", b"[1, 2]", b'"savedmodel"'):
        assert without_placeholder_port(raw) == raw


def run(middleware: Any, scope: dict[str, Any], chunks: list[bytes]) -> dict[str, Any]:
    """Drive the ASGI middleware with ``chunks`` as the request body; what the app received."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.update(scope=scope, body=message["body"], more=message.get("more_body", False))

    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        return None

    asyncio.run(middleware(app)(scope, receive, send))
    return seen


def test_the_middleware_rewrites_the_test_request_and_its_content_length() -> None:
    body = json.dumps({"conn_type": "savedmodel", "connection_id": "c", "port": 0}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2/connections/test",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    seen = run(ConnectionTestPortMiddleware, scope, [body[:10], body[10:]])
    assert json.loads(seen["body"]) == {"conn_type": "savedmodel", "connection_id": "c"}
    assert seen["more"] is False
    assert dict(seen["scope"]["headers"])[b"content-length"] == str(len(seen["body"])).encode()


def test_every_other_request_reaches_the_app_untouched() -> None:
    body = json.dumps({"conn_type": "savedmodel", "port": 0}).encode()
    for method, path in (("POST", "/api/v2/connections"), ("GET", "/api/v2/connections/test")):
        scope = {"type": "http", "method": method, "path": path, "headers": []}
        seen = run(ConnectionTestPortMiddleware, scope, [body])
        assert seen["body"] == body and seen["scope"] is scope


def test_the_plugin_registers_the_middleware_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "savedmodel"]
    assert entry.load() is SavedModelPlugin
    assert SavedModelPlugin.fastapi_root_middlewares[0]["middleware"] is ConnectionTestPortMiddleware
