"""The deferrable sensors' trigger loop against real storage: it lists natively, runs the
readiness check only when the listing changed, rides out transient errors with backoff, and
ends on permanent ones with the store's reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import publish
from airflow_savedmodel.triggers.savedmodel import (
    SavedModelTrigger,
    SavedModelVersionTrigger,
    backoff_seconds,
)

from integration.servers import FaultProxy, Store

pytestmark = pytest.mark.integration


def small_model(root: Path, name: str = "model") -> str:
    layer = DenseLayer(np.ones((3, 2), np.float32), np.zeros(2, np.float32), "softmax")
    return export_dense_model(str(root / name), [layer])


async def first_event(trigger: Any, timeout: float = 60.0) -> Any:
    return await asyncio.wait_for(trigger.run().__anext__(), timeout)


def is_listing(method: str, path: str) -> bool:
    return method == "GET" and "/o?" in path and "alt=media" not in path


def test_transient_errors_are_retried_with_backoff_and_the_trigger_still_fires(
    gcs: Store, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bucket = gcs.bucket()
    publish(small_model(tmp_path), f"{bucket}/serving", base_options=gcs.options)
    proxy = FaultProxy(gcs.options["endpoint_url"])
    failing = {"left": 7}  # gcsfs retries a request 6 times itself; the 7th failure reaches us

    def fault(method: str, path: str) -> int | None:
        if is_listing(method, path) and failing["left"] > 0:
            failing["left"] -= 1
            return 503
        return None

    proxy.fault = fault
    try:
        trigger = SavedModelVersionTrigger(
            f"{bucket}/serving",
            storage_options={"token": "anon", "endpoint_url": proxy.endpoint},
            poke_interval=0.05,
        )
        event = asyncio.run(first_event(trigger))
    finally:
        proxy.stop()
    assert event.payload["status"] == "success", event.payload
    assert event.payload["version"]["version"] == 1 and event.payload["version"]["state"] == "complete"
    assert [status for _, _, status in proxy.requests].count(503) == 7
    logged = capfd.readouterr()
    retried = [line for line in (logged.out + logged.err).splitlines() if "Transient storage error" in line]
    assert retried and "HttpError: injected by the test proxy, 503" in retried[0], retried


def test_a_permanent_error_ends_the_wait_with_the_stores_reason(gcs: Store, tmp_path: Path) -> None:
    bucket = gcs.bucket()
    proxy = FaultProxy(gcs.options["endpoint_url"])
    proxy.fault = lambda method, path: 403 if is_listing(method, path) else None
    try:
        trigger = SavedModelTrigger(
            f"{bucket}/model",
            storage_options={"token": "anon", "endpoint_url": proxy.endpoint},
            poke_interval=0.05,
        )
        event = asyncio.run(first_event(trigger, timeout=30))
    finally:
        proxy.stop()
    assert event.payload["status"] == "error"
    assert event.payload["message"].startswith(
        f"{bucket}/model: storage request failed: OSError: Forbidden: "
    )
    assert "injected by the test proxy" in event.payload["message"]
    assert [status for _, _, status in proxy.requests].count(403) == 1  # not retried


def test_the_readiness_check_runs_only_when_the_listing_changed(tmp_path: Path) -> None:
    checks: list[str] = []

    class Counting(SavedModelTrigger):
        def check(self, fs: Any, path: str) -> Any:
            result = super().check(fs, path)
            checks.append(result.waiting_for or "ready")
            return result

    target = tmp_path / "model"

    async def scenario() -> Any:
        waiting = asyncio.create_task(first_event(Counting(str(target), poke_interval=0.02)))
        await asyncio.sleep(0.5)  # ~25 polls of an unchanged (absent) directory
        assert checks == ["does not exist"]
        await asyncio.to_thread(small_model, tmp_path, "written")
        (tmp_path / "written").rename(target)
        return await waiting

    event = asyncio.run(scenario())
    assert event.payload["status"] == "success" and checks[-1] == "ready" and len(checks) <= 3


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    delays = [backoff_seconds(n, 1.0) for n in range(1, 12)]
    assert 1.0 <= delays[0] <= 2.0 and 4.0 <= delays[2] <= 8.0
    assert all(d <= 600 for d in delays) and delays[-1] >= 300
