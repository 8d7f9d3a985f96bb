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
    """A small model whose weights differ by name (equal content would be one version)."""
    bias = np.full(2, sum(map(ord, name)) * 1e-3, np.float32)
    layer = DenseLayer(np.ones((3, 2), np.float32), bias, "softmax")
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


async def events_until(trigger: Any, count: int, act: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run a watcher; call ``act()`` (in a thread) once it has listed once; collect ``count`` events."""
    got: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in trigger.run():
            got.append(event.payload)
            if len(got) == count:
                return

    task = asyncio.create_task(collect())
    while trigger._announced is None:  # its first listing: what exists then is not news
        await asyncio.sleep(0.02)
    await asyncio.to_thread(act)
    await asyncio.wait_for(task, timeout)
    return got


def test_a_watcher_announces_each_new_complete_version_once_in_order(gcs: Store, tmp_path: Path) -> None:
    """What exists at the first start is not news; a half-written version is not announced; two
    versions completing between listings are announced one by one, oldest first."""
    from airflow_savedmodel.triggers.savedmodel import SavedModelNewVersionTrigger

    base = f"{gcs.bucket()}/pushed"
    publish(small_model(tmp_path, "a"), base, base_options=gcs.options)
    trigger = SavedModelNewVersionTrigger(base, storage_options=gcs.options, poke_interval=0.2)

    def two_versions_and_a_torso() -> None:
        gcs.fs().pipe(f"{base.removeprefix('gs://')}/5/variables/variables.index", b"half written")
        for name in ("b", "c"):
            publish(small_model(tmp_path, name), base, base_options=gcs.options)

    got = asyncio.run(events_until(trigger, 2, two_versions_and_a_torso))
    assert [e["version"] for e in got] == [6, 7]
    assert all(e["status"] == "success" and e["uri"] == f"{base}/{e['version']}" for e in got)
    assert all(len(e["fingerprint"] or "") > 10 for e in got), got


def test_watchers_of_one_base_path_share_one_listing_and_each_keeps_its_own_place(tmp_path: Path) -> None:
    """The shared stream: one poll loop (open_shared_stream) fans out to every watcher's filter;
    a watcher told where to start (newer_than) announces from there, another from what exists."""
    from airflow_savedmodel.triggers.savedmodel import SavedModelNewVersionTrigger

    base = str(tmp_path / "serving")
    publish(small_model(tmp_path, "a"), base)
    first = SavedModelNewVersionTrigger(base, poke_interval=0.05)
    second = SavedModelNewVersionTrigger(base, poke_interval=0.05, newer_than=0)
    assert first.shared_stream_key() == second.shared_stream_key()  # newer_than is each watcher's own
    assert (
        first.shared_stream_key() == SavedModelNewVersionTrigger(base, poke_interval=0.05).shared_stream_key()
    )
    assert first.shared_stream_key() != SavedModelNewVersionTrigger(base, poke_interval=1).shared_stream_key()

    async def fan_out() -> tuple[list[int], list[int], int]:
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(), asyncio.Queue()]
        polls = 0

        async def pump() -> None:
            nonlocal polls
            async for raw in SavedModelNewVersionTrigger.open_shared_stream(first.serialize()[1]):
                polls += 1
                for queue in queues:
                    queue.put_nowait(raw)

        async def stream(queue: asyncio.Queue[Any]) -> Any:
            while True:
                yield await queue.get()

        async def take(trigger: Any, queue: asyncio.Queue[Any], count: int) -> list[int]:
            got = []
            async for event in trigger.filter_shared_stream(stream(queue)):
                got.append(event.payload["version"])
                if len(got) == count:
                    return got
            return got

        pumping = asyncio.create_task(pump())
        while polls == 0:
            await asyncio.sleep(0.01)
        waiting = [
            asyncio.create_task(take(first, queues[0], 1)),
            asyncio.create_task(take(second, queues[1], 2)),
        ]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(publish, small_model(tmp_path, "b"), base)
        a, b = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        pumping.cancel()
        return a, b, polls

    a, b, polls = asyncio.run(fan_out())
    assert a == [2] and b == [1, 2]
    assert polls == 2  # one listing result per change, shared: the start and the new version


def test_a_watcher_outlives_a_store_outage(
    gcs: Store, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Errors never end a watcher (a trigger that returns would stop the Asset's events): it
    says so, backs off, and announces once the store answers again."""
    from airflow_savedmodel.triggers.savedmodel import SavedModelNewVersionTrigger

    bucket = gcs.bucket()
    proxy = FaultProxy(gcs.options["endpoint_url"])
    down = {"on": False}
    proxy.fault = lambda method, path: 503 if down["on"] and is_listing(method, path) else None
    try:
        trigger = SavedModelNewVersionTrigger(
            f"{bucket}/pushed",
            storage_options={"token": "anon", "endpoint_url": proxy.endpoint},
            poke_interval=0.05,
        )

        def outage_then_publish() -> None:
            down["on"] = True
            import time

            time.sleep(3)
            down["on"] = False
            publish(small_model(tmp_path), f"{bucket}/pushed", base_options=gcs.options)

        got = asyncio.run(events_until(trigger, 1, outage_then_publish, timeout=120))
        assert [e["version"] for e in got] == [1]
    finally:
        proxy.stop()


def test_sensors_waiting_on_one_base_path_share_its_listing_and_readiness(tmp_path: Path) -> None:
    """Sixteen waits on one base path in one event loop (a triggerer): one listing per interval
    for all of them, not sixteen, and each still fires on the version it waits for."""
    from airflow_savedmodel.triggers import shared
    from airflow_savedmodel.triggers.savedmodel import _location_key

    base = str(tmp_path / "serving")
    publish(small_model(tmp_path, "v1"), base)

    async def scenario() -> tuple[list[int], int, float]:
        triggers = [
            SavedModelVersionTrigger(base, newer_than=1 if i % 2 else None, poke_interval=0.2)
            for i in range(16)
        ]
        waits = [asyncio.create_task(first_event(t)) for t in triggers[::2]]  # newer_than=None: fire at once
        fired = [e.payload["version"]["version"] for e in await asyncio.gather(*waits)]
        pending = [asyncio.create_task(first_event(t)) for t in triggers[1::2]]
        await asyncio.sleep(2.0)  # about ten intervals of eight waiting triggers
        poll = shared.poll_for(_location_key(None, None, base))
        listings_while_waiting = poll.listings
        await asyncio.to_thread(publish, small_model(tmp_path, "v2"), base)
        fired += [e.payload["version"]["version"] for e in await asyncio.gather(*pending)]
        return fired, listings_while_waiting, 2.0 / 0.2

    fired, listings, rounds = asyncio.run(scenario())
    assert fired == [1] * 8 + [2] * 8
    assert listings <= rounds + 3, f"{listings} listings for {rounds:.0f} intervals of 8 waits"


# Each case runs in a child forked from an interpreter that has loaded only Airflow, so every
# import a trigger makes is a first import, as in a triggerer that has just started. The trigger
# class is imported on the loop, as Airflow does; the CPU time each loop callback takes is
# measured on the loop's own thread (time.thread_time), so work done in threads, or time the
# machine spends elsewhere, is not counted as blocking.
LOOP_PROBE = r"""
import asyncio, json, os, sys, time
from asyncio import events

import airflow.triggers.base  # the triggerer has Airflow loaded before it starts a trigger


def probe(classpath, kwargs, wait):
    worst = {"seconds": 0.0, "callback": ""}
    plain_run = events.Handle._run

    def timed(handle):
        start = time.thread_time()
        plain_run(handle)
        spent = time.thread_time() - start
        if spent > worst["seconds"]:
            worst.update(seconds=spent, callback=repr(handle)[:300])

    events.Handle._run = timed

    async def main():
        from airflow._shared.module_loading import import_string

        trigger = import_string(classpath)(**kwargs)
        first = asyncio.ensure_future(trigger.run().__anext__())
        done, _ = await asyncio.wait([first], timeout=wait)
        if not done:
            first.cancel()
            return None
        return first.result().payload

    return {"worst": worst, "payload": asyncio.run(main())}


for name, (classpath, kwargs, wait) in json.loads(sys.argv[1]).items():
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        print(json.dumps({"case": name, **probe(classpath, kwargs, wait)}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_no_trigger_blocks_the_triggerers_loop(gcs: Store, tmp_path: Path) -> None:
    """Airflow warns when a trigger holds the triggerer's event loop for more than 0.2 s: every
    trigger's first poll, imports included, stays under that on the loop's own thread."""
    import json
    import subprocess
    import sys

    base = tmp_path / "serving"
    model = publish(small_model(tmp_path), str(base)).url
    triggers = "airflow_savedmodel.triggers.savedmodel."
    cases: dict[str, tuple[str, dict[str, Any], float]] = {
        "model": (triggers + "SavedModelTrigger", {"model_url": model, "poke_interval": 0.2}, 60),
        "version": (
            triggers + "SavedModelVersionTrigger",
            {"base_path": str(base), "newer_than": 0, "poke_interval": 0.2},
            60,
        ),
        "new-version": (
            triggers + "SavedModelNewVersionTrigger",
            {"base_path": str(base), "newer_than": 0, "poke_interval": 0.2},
            60,
        ),
        "new-version-gs": (
            triggers + "SavedModelNewVersionTrigger",
            {"base_path": f"{gcs.bucket()}/empty", "storage_options": gcs.options, "poke_interval": 0.2},
            3,
        ),
        # nothing listens there: the trigger keeps waiting, with its retries and backoff
        "served": (
            triggers + "SavedModelServedTrigger",
            {"server_url": "http://127.0.0.1:9", "model_name": "m", "version": 1, "poke_interval": 0.05},
            2,
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", LOOP_PROBE, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"case": ')]
    results = {r["case"]: r for r in map(json.loads, lines)}
    assert set(results) == set(cases), out.stderr[-2000:]
    for kind in ("model", "version", "new-version"):  # a real first poll, not an early error
        assert results[kind]["payload"]["status"] == "success", results[kind]
    worst = {kind: r["worst"] for kind, r in results.items() if r["worst"]["seconds"] >= 0.2}
    assert not worst, worst
