"""The distributed stack (docker-compose.yml's, as processes) and a fleet run on it, shared by
test_celery_stack.py and benchmarks/bench_fleet.py.

``celery_stack()`` starts PostgreSQL, Redis and Airflow with the CeleryExecutor (two workers)
against a GCS server; ``run_fleet()`` triggers example_savedmodel_fleet over N models while a
watcher reads the shared model config the way TF Serving does (parsed with TF Serving's own
proto), optionally SIGKILLs a Celery worker while publishes on it wait to name their copied
versions, and returns the figures.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

from integration.airflow_stack import CeleryStack, wait_until
from integration.db_servers import Postgres, Redis
from integration.servers import Store

FLEET = "example_savedmodel_fleet"
ROOT = Path(__file__).resolve().parents[2]
STARTED_DAG = '''"""A sensor that starts in the triggerer (start_from_trigger), for the distributed test."""
import datetime

from airflow.sdk import DAG, Param

from airflow_savedmodel.sensors.savedmodel import SavedModelSensor

with DAG(
    "savedmodel_started_in_triggerer",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    params={"url": Param("/nonexistent", type="string")},
):
    SavedModelSensor(
        task_id="wait", model_url="{{ params.url }}", deferrable=True, start_from_trigger=True, poke_interval=2
    )
'''


@contextlib.contextmanager
def celery_stack(gcs: Store, root: Path, *, concurrency: int = 4) -> Iterator[CeleryStack]:
    """Airflow on Celery, PostgreSQL and Redis, configured by docker-compose.yml; the training
    bucket on ``gcs``; local directories under ``root`` for compose's /models volume and the
    fleet's exports and serving root."""
    fs = gcs.fs()
    if not fs.exists("training"):
        fs.mkdir("training")
    (root / "models" / "classifier").mkdir(parents=True, exist_ok=True)
    dags = root / "dags"  # compose mounts ./dags; here a copy, with one test DAG beside the examples
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (dags / "savedmodel_started_in_triggerer.py").write_text(STARTED_DAG)
    postgres = Postgres()
    redis = Redis()
    stack = None
    try:
        stack = CeleryStack(
            root / "airflow-home",
            hosts={
                "@postgres/": f"@127.0.0.1:{postgres.port}/",
                "redis:6379": f"127.0.0.1:{redis.port}",
                "http://gcs:9023": gcs.options["endpoint_url"],
            },
            paths={"/models/": f"{root}/models/", "/opt/airflow/config/": f"{root}/airflow-home/"},
            overrides={
                # No TF Serving here: the training DAG takes its local path (canary, then promote).
                "SAVEDMODEL_TF_SERVING_URL": "",
                "SAVEDMODEL_FLEET_EXPORT_ROOT": f"{root}/fleet/exports",
                "SAVEDMODEL_FLEET_SERVING_ROOT": f"{root}/fleet/serving",
                "SAVEDMODEL_WATCH_BASE": f"{root}/pushed/ranker",
                "SAVEDMODEL_WATCH_MIRROR": f"{root}/mirror/ranker",
                "SAVEDMODEL_WATCH_SECONDS": "2",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                # A lost worker's tasks are noticed in seconds, not Airflow's default 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
                "AIRFLOW__CORE__PARALLELISM": "16",
            },
            concurrency=concurrency,
        )
        yield stack.start()
    except BaseException:
        if stack is not None:
            for name in stack.processes:
                print(f"---- {name} ----\n{stack.log_tail(name, 40)}")
        raise
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        postgres.stop()


def write_models(root: Path, count: int) -> list[str]:
    names = []
    for index in range(count):
        rng = np.random.default_rng(1000 + index)
        layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
        export_dense_model(str(root / f"model-{index:03d}"), [layer])
        names.append(f"model-{index:03d}")
    return names


@dataclass
class ConfigWatcher:
    """Reads the model config every few milliseconds, as TF Serving's poll does, parsing it with
    TF Serving's own ModelServerConfig: counts torn reads and entries that disappear."""

    path: Path
    reads: int = 0
    torn: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ConfigWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        while not self._stop.wait(0.005):
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                continue
            self.reads += 1
            try:
                config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
            except text_format.ParseError as exc:
                self.torn.append(str(exc))
                continue
            names = {m.name for m in config.model_config_list.config}
            self.lost.extend(sorted(self.seen - names))
            self.seen |= names


@dataclass
class FleetRun:
    models: int
    seconds: float  # trigger to the run's end
    publish_seconds: list[float]  # each model's publish as the task measured it
    lock_waits: dict[str, float]
    outcome: dict[str, Any]
    tries: dict[str, int]  # model -> try number of its publish
    watcher: ConfigWatcher
    killed: str | None = None
    killed_waiting: int = 0  # the killed worker's publishes that had copied and waited for the config


def _publish_tis(stack: CeleryStack, run_id: str) -> list[dict[str, Any]]:
    run = urllib.parse.quote(run_id, safe="")
    path = f"/dags/{FLEET}/dagRuns/{run}/taskInstances?task_id=publish&limit=1000"
    return [ti for ti in stack.get(path)["task_instances"] if ti["task_id"] == "publish"]


def run_fleet(stack: CeleryStack, root: Path, count: int, *, kill: str | None = None) -> FleetRun:
    """Trigger the fleet DAG over ``count`` fresh models; with ``kill``, SIGKILL that worker
    mid-fleet while publishes on it wait to name their copied version in the config."""
    exports = root / "fleet" / "exports"
    serving_root = root / "fleet" / "serving"
    write_models(exports, count)
    stack.unpause(FLEET)
    with ConfigWatcher(serving_root / "models.config") as watcher:
        started = time.monotonic()
        run_id = stack.trigger(FLEET, {})
        held: list[int] = []
        if kill:
            held = _kill_while_waiting_for_the_config(
                stack, run_id, kill, serving_root / "models.config.lock"
            )
        state = wait_until(
            f"the fleet run {run_id} to finish",
            lambda: (s := stack.run_state(FLEET, run_id)) in ("success", "failed") and s,
            900,
            1,
        )
        seconds = time.monotonic() - started
    summary = stack.xcom(FLEET, run_id, "summary", key="summary")
    tis = _publish_tis(stack, run_id)
    assert state == "success", (state, summary, {ti["map_index"]: ti["state"] for ti in tis})
    tries = {ti["rendered_map_index"] or str(ti["map_index"]): int(ti["try_number"]) for ti in tis}
    return FleetRun(
        models=count,
        seconds=seconds,
        publish_seconds=[p["seconds"] for p in summary["published"]],
        lock_waits=summary["config_wait_seconds"],
        outcome=summary,
        tries=tries,
        watcher=watcher,
        killed=kill,
        killed_waiting=len(held),
    )


def _kill_while_waiting_for_the_config(stack: CeleryStack, run_id: str, worker: str, lock: Path) -> list[int]:
    """SIGKILL ``worker`` mid-fleet while at least two of its publishes have copied their version
    and wait to name it in the shared model config: the window in which a lost worker leaves a
    complete version no config names. The test holds the config's lock (as a slow writer would)
    from when two models are published until the kill, so the window is certain, not lucky.
    Returns the killed processes that were waiting."""

    def published_some() -> bool:
        stack.check_alive()
        return sum(ti["state"] == "success" for ti in _publish_tis(stack, run_id)) >= 2

    wait_until("two models published", published_some, 300, 0.2)
    with lock.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:

            def waiting() -> list[int] | None:
                stack.check_alive()
                return found if len(found := stack.holding(worker, lock)) >= 2 else None

            held = wait_until(f"two publishes on {worker} waiting for the config", waiting, 300, 0.2)
            stack.kill(worker)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return held


def describe(run: FleetRun) -> str:
    median = statistics.median(run.publish_seconds)
    return (
        f"{run.models} models in {run.seconds:.1f} s ({run.seconds / run.models:.2f} s per model; one "
        f"publish {median:.2f} s median); config lock waits {run.lock_waits}; watcher {run.watcher.reads} "
        f"reads, {len(run.watcher.torn)} torn, {len(run.watcher.lost)} entries lost; retried "
        f"{sum(t > 1 for t in run.tries.values())}"
        + (f" ({run.killed_waiting} killed while waiting for the config)" if run.killed else "")
    )
