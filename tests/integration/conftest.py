"""Session-wide GCS and S3 servers on 127.0.0.1 (stopped at the end of the session)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(virtualenv, Airflow home, stdout) of one `make demo` run, as a new user runs it: a
    virtualenv with only the runtime package, AIRFLOW_HOME of the user's choosing."""
    root = tmp_path_factory.mktemp("demo")
    venv, home = root / "venv", root / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "SAVEDMODEL_"))}
    env["AIRFLOW_HOME"] = str(home)
    done = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_VENV={venv}"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv, home, done.stdout


def ui_command(demo: tuple[Path, Path, str]) -> str:
    """The line `make demo` printed for browsing its runs in the UI."""
    venv, _, out = demo
    lines = [line.strip() for line in out.splitlines() if line.strip().endswith(f"make ui DEMO_VENV={venv}")]
    assert lines, f"make demo printed no UI command:\n{out}"
    return lines[0]


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
