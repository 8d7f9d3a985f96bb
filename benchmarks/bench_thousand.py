"""A full triggerer: 1,000 triggers on one event loop, as Airflow's default triggerer capacity
allows: 800 deferred version sensors and 200 AssetWatcher triggers over 50 base paths on the
GCS server behind a proxy adding 30 ms per request, polling every 5 s. Then a version is
published under each base path (by another process, straight to the server, 8 at a time) and
every trigger's event is timed from its version's completion.

Reported against the same triggers with nothing shared (each lists and checks on its own, as
before shared polls): CPU per trigger per poll, listing requests per interval, memory per
trigger, the longest the event loop was blocked (Airflow warns above 0.2 s) and the delay to
the events (median, worst; the goal is at most one interval plus 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.bench_triggers import _cpu, _rss_mb
from benchmarks.common import Row, gcs_behind_proxy

PATHS = 50
SENSORS_PER_PATH = 16
WATCHERS_PER_PATH = 4
POKE_SECONDS = 5.0
WAIT_SECONDS = 30.0


@contextlib.contextmanager
def _unshared() -> Iterator[None]:
    """Every trigger its own poll: what each paid before listings were shared."""
    from airflow_savedmodel.triggers import savedmodel, shared

    real = shared.poll_for
    savedmodel.shared.poll_for = lambda key: shared.SharedPoll()  # type: ignore[assignment]
    try:
        yield
    finally:
        savedmodel.shared.poll_for = real  # type: ignore[assignment]


def _quiet(cls: Any) -> Any:
    class Quiet(cls):  # type: ignore[misc,valid-type]
        log = logging.getLogger("bench.quiet")

    return Quiet


async def _scenario(bases: list[str], options: dict[str, Any], publish_all: Any) -> dict[str, float]:
    from airflow_savedmodel.triggers.savedmodel import SavedModelNewVersionTrigger, SavedModelVersionTrigger

    sensor_cls, watcher_cls = _quiet(SavedModelVersionTrigger), _quiet(SavedModelNewVersionTrigger)
    rss, cpu = _rss_mb(), _cpu()
    events: dict[str, list[float]] = {base: [] for base in bases}
    blocks = {"start": 0.0, "steady": 0.0}
    phase = {"now": "start"}
    stop = asyncio.Event()

    async def watchdog() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.05)
            lag = time.monotonic() - before - 0.05
            blocks[phase["now"]] = max(blocks[phase["now"]], lag)

    async def sensor(base: str) -> None:
        trigger = sensor_cls(base, storage_options=options, poke_interval=POKE_SECONDS)
        event = await trigger.run().__anext__()
        if event.payload["status"] != "success":
            raise RuntimeError(event.payload)
        events[base].append(time.monotonic())

    async def watcher(base: str) -> None:
        trigger = watcher_cls(base, storage_options=options, poke_interval=POKE_SECONDS, newer_than=0)
        async for _ in trigger.run():
            events[base].append(time.monotonic())
            return
        raise RuntimeError("a watcher ended")

    guard = asyncio.create_task(watchdog())
    tasks = [asyncio.create_task(sensor(b)) for b in bases for _ in range(SENSORS_PER_PATH)]
    tasks += [asyncio.create_task(watcher(b)) for b in bases for _ in range(WATCHERS_PER_PATH)]
    count = len(tasks)
    await asyncio.sleep(POKE_SECONDS)  # every trigger started and listed once
    phase["now"] = "steady"  # waiting, then the events
    cpu, listed = _cpu(), _listings()
    await asyncio.sleep(WAIT_SECONDS)
    cpu_ms = (_cpu() - cpu) * 1000 / (count * WAIT_SECONDS / POKE_SECONDS)
    listings = (_listings() - listed) / (WAIT_SECONDS / POKE_SECONDS)
    mb = (_rss_mb() - rss) / count
    completed = await asyncio.to_thread(publish_all)
    await asyncio.wait_for(asyncio.gather(*tasks), POKE_SECONDS * 6 + 60)
    stop.set()
    await guard
    delays = [t - completed[base] for base, times in events.items() for t in times]
    worst_base, worst_event = max(
        ((base, t) for base, times in events.items() for t in times), key=lambda e: e[1] - completed[e[0]]
    )
    return {
        **_where_the_time_went(worst_base, completed[worst_base], worst_event, completed),
        "triggers": count,
        "cpu_ms": cpu_ms,
        "listings": listings,
        "mb": mb,
        "block": blocks["steady"],
        "start_block": blocks["start"],
        "median": statistics.median(delays),
        "worst": max(delays),
    }


def _where_the_time_went(
    base: str, completed: float, event: float, all_completed: dict[str, float]
) -> dict[str, float]:
    """The worst event's delay in parts: until the first listing that began after the version
    completed (the poll interval's share), that listing, and the readiness checks after it; and
    how many other versions were still being published when it completed (the server's load)."""
    path = base.removeprefix("gs://").rstrip("/")
    listings = [t for t in LISTINGS["times"].get(path, []) if t[0] >= completed and t[1] <= event]
    if not listings:
        return {"worst_wait": float("nan"), "worst_listing": float("nan"), "worst_checks": float("nan")}
    began, ended = listings[0]
    return {
        "worst_wait": began - completed,
        "worst_listing": ended - began,
        "worst_checks": event - ended,
        "worst_published_after": sum(1 for t in all_completed.values() if t > completed),
    }


LISTINGS: dict[str, Any] = {"count": 0, "times": {}}


def _listings() -> int:
    return int(LISTINGS["count"])


def _counting_proxy_listings(proxy_endpoint: str) -> None:
    """Count listing requests the triggers send, and when each began and ended: wrap
    location.alisting."""
    from airflow_savedmodel import location

    real = location.alisting

    async def counted(fs: Any, path: str) -> Any:
        LISTINGS["count"] += 1
        began = time.monotonic()
        try:
            return await real(fs, path)
        finally:
            LISTINGS["times"].setdefault(path.rstrip("/"), []).append((began, time.monotonic()))

    location.alisting = counted  # type: ignore[assignment]


# The publisher is another process (another machine, in life): its threads would otherwise
# compete with the triggers for this process's interpreter lock.
_PUBLISHER = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from airflow_savedmodel.storage import publish
model, options, bases = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
def one(base):
    publish(model, base, base_options=options)
    print(base, time.monotonic(), flush=True)
with ThreadPoolExecutor(8) as pool:
    list(pool.map(one, bases))
"""


def _run_once(
    bucket: str, tag: str, options: dict[str, Any], direct: dict[str, Any], model: str
) -> dict[str, float]:
    import json
    import subprocess
    import sys

    bases = [f"{bucket}/{tag}-{i:02d}" for i in range(PATHS)]

    def publish_all() -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-c", _PUBLISHER, model, json.dumps(direct), *bases],
            capture_output=True,
            text=True,
            check=True,
        )
        return {base: float(t) for base, t in (line.split() for line in done.stdout.splitlines())}

    return asyncio.run(_scenario(bases, options, publish_all))


def run() -> list[Row]:
    import numpy as np

    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    logging.getLogger("bench.quiet").setLevel(logging.WARNING)
    with gcs_behind_proxy(0.03) as (server, options), tempfile.TemporaryDirectory() as tmp:
        _counting_proxy_listings(options["endpoint_url"])
        layer = DenseLayer(np.ones((4, 3), np.float32), np.zeros(3, np.float32), "softmax")
        model = export_dense_model(f"{tmp}/model", [layer])
        bucket = server.store.bucket()
        direct = server.store.options
        ours = _run_once(bucket, "shared", options, direct, model)
        with _unshared():
            theirs = _run_once(bucket, "alone", options, direct, model)
    print(f"shared: {ours}\nalone: {theirs}")
    what = (
        f"{ours['triggers']:.0f} triggers (800 version sensors, 200 watchers) over {PATHS} base paths, "
        f"{POKE_SECONDS:.0f} s polls, 30 ms per request"
    )
    alternative = "the same triggers, each listing and checking on its own"
    return [
        Row(f"{what}: CPU per trigger per poll", ours["cpu_ms"], theirs["cpu_ms"], "ms", alternative),
        Row(f"{what}: listings per interval", ours["listings"], theirs["listings"], "requests", alternative),
        Row(f"{what}: MB per trigger", max(ours["mb"], 1e-3), max(theirs["mb"], 1e-3), "MB", alternative),
        Row(
            f"{what}: longest event-loop block while waiting and firing, s (Airflow warns above 0.2)",
            ours["block"],
            theirs["block"],
            "s",
            alternative,
        ),
        Row(
            f"{what}: median delay from a complete version to its event, s",
            ours["median"],
            theirs["median"],
            "s",
            alternative,
        ),
        Row(
            f"{what}: worst delay, s (goal: at most {POKE_SECONDS + 2:.0f})",
            ours["worst"],
            theirs["worst"],
            "s",
            alternative,
            note=(
                f"the worst event waited {ours['worst_wait']:.2f} s for its base path's next poll, "
                f"{ours['worst_listing']:.2f} s for the listing and {ours['worst_checks']:.2f} s for "
                f"the readiness checks, with {ours['worst_published_after']:.0f} of the 50 publishes "
                "still running on the same server"
            ),
        ),
    ]
