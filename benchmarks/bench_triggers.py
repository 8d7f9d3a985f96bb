"""200 deferred sensors on one triggerer: 200 SavedModelVersionTriggers waiting on one event
loop for a version under the GCS server (through a proxy adding 30 ms per request), against the
same number of waits in the previous design (each poll's readiness check in a worker thread).
Reported: CPU per trigger per poll, memory per trigger, and the delay from a version's
completion to each trigger's event."""

from __future__ import annotations

import asyncio
import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, gcs_behind_proxy

TRIGGERS = 200
POKE_SECONDS = 2.0
WAIT_SECONDS = 20.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _previous_design(base: str, options: dict[str, Any]) -> Any:
    """The trigger loop before: every poll ran the readiness check in a worker thread."""
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.versions import newer_version_readiness

    where = await asyncio.to_thread(resolve, base, options)
    while True:
        ready = await asyncio.to_thread(newer_version_readiness, where.fs, where.path, None)
        if ready.done:
            return ready.found
        await asyncio.sleep(POKE_SECONDS)


async def _ours(base: str, options: dict[str, Any]) -> Any:
    from airflow_savedmodel.triggers.savedmodel import SavedModelVersionTrigger

    class Quiet(SavedModelVersionTrigger):
        """Its per-poll log line is not what is measured (the loop before did not log here)."""

        log = logging.getLogger("bench.quiet")  # type: ignore[assignment]

    trigger = Quiet(base, storage_options=options, poke_interval=POKE_SECONDS)
    payload = (await trigger.run().__anext__()).payload
    if payload["status"] != "success":
        raise RuntimeError(f"a trigger failed: {payload}")
    return payload


def _measure(
    kind: str, model: str, bucket: str, options: dict[str, Any]
) -> tuple[float, float, float, float]:
    """(CPU ms per trigger per poll, MB per trigger, median and max delay in s to the event)."""
    from airflow_savedmodel.storage import publish

    wait = _ours if kind == "ours" else _previous_design
    base = f"{bucket}/{kind}"

    async def scenario() -> tuple[float, float, float, float]:
        rss, cpu = _rss_mb(), _cpu()
        done: list[float] = []

        async def one() -> None:
            await wait(base, options)
            done.append(time.monotonic())

        tasks = [asyncio.create_task(one()) for _ in range(TRIGGERS)]
        await asyncio.sleep(WAIT_SECONDS)
        cpu_ms = (_cpu() - cpu) * 1000 / (TRIGGERS * WAIT_SECONDS / POKE_SECONDS)
        mb = (_rss_mb() - rss) / TRIGGERS
        await asyncio.to_thread(publish, model, base, base_options=options)
        complete = time.monotonic()
        await asyncio.gather(*tasks)
        delays = [t - complete for t in done]
        return cpu_ms, mb, statistics.median(delays), max(delays)

    return asyncio.run(scenario())


def _warm_up(model: str, bucket: str, options: dict[str, Any]) -> None:
    """Import and initialise what both designs use, so neither pays for it while measured."""
    from airflow_savedmodel.storage import publish

    publish(model, f"{bucket}/warm", base_options=options)
    for wait in (_ours, _previous_design):
        asyncio.run(wait(f"{bucket}/warm", options))


def run() -> list[Row]:
    import tempfile

    import numpy as np

    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    logging.getLogger("bench.quiet").setLevel(logging.WARNING)
    with gcs_behind_proxy(0.03) as (server, options), tempfile.TemporaryDirectory() as tmp:
        layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
        model = export_dense_model(f"{tmp}/model", [layer])
        bucket = server.store.bucket()
        _warm_up(model, bucket, options)
        ours = _measure("ours", model, bucket, options)
        theirs = _measure("previous", model, bucket, options)
    what = f"{TRIGGERS} deferred version sensors, {POKE_SECONDS:.0f} s polls, 30 ms per request"
    alternative = "each poll's readiness check in a worker thread (before)"
    return [
        Row(f"{what}: CPU per trigger per poll", ours[0], theirs[0], "ms", alternative),
        Row(f"{what}: MB per trigger", max(ours[1], 1e-3), max(theirs[1], 1e-3), "MB", alternative),
        Row(
            f"{what}: median delay from a complete version to its event, s",
            ours[2],
            theirs[2],
            "s",
            alternative,
        ),
        Row(f"{what}: worst delay, s", ours[3], theirs[3], "s", alternative),
    ]
