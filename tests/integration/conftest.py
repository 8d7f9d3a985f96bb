"""Session-wide GCS and S3 servers on 127.0.0.1 (stopped at the end of the session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.servers import GcsServer, S3Server, Store


@pytest.fixture(scope="session")
def gcs() -> Iterator[Store]:
    server = GcsServer()
    try:
        yield server.store
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[Store]:
    server = S3Server()
    try:
        yield server.store
    finally:
        server.stop()


@pytest.fixture(params=["local", "memory", "gs", "s3"])
def store_base(request: pytest.FixtureRequest, tmp_path) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    """(base URL, storage options) on each kind of filesystem."""
    if request.param == "local":
        return str(tmp_path / "serving"), {}
    if request.param == "memory":
        import uuid

        return f"memory://serving-{uuid.uuid4().hex[:8]}", {}
    store: Store = request.getfixturevalue("gcs" if request.param == "gs" else "s3")
    return store.bucket() + "/models/ranker", store.options


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A screenshot of the browser's page when a test that drives it fails."""
    outcome = yield
    report = outcome.get_result()
    window = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and window is not None:
        path = window.shot(f"failed {item.name}")
        report.sections.append(("screenshot", str(path)))
