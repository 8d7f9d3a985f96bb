"""Publishes watched the way TensorFlow Serving watches (tests/serving_watcher.py), on a local disk,
the GCS server and moto's S3 server: SIGKILLed publishes, concurrent publishers and retention
running beside them. Gated publishes (through the model config file) and local publishes must
give the watcher zero failed loads and zero loads of content that was not published."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from serving_watcher import ServingWatcher, TensorFlowLoader

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import gc, list_versions, model_config, publish
from airflow_savedmodel.storage.publish import ServingTarget

from integration.children import run_python_killed_after

pytestmark = [pytest.mark.integration, pytest.mark.interop, pytest.mark.timeout(900)]

PROBE = {"x": [[0.5, -1.0, 2.0, 0.25]] * 2}
KILL_MOMENTS = [1, 2, 3, 4, 6, 8, 10, 13, 16, 20, 24, 28, 32, 36, 39, 41, 43, 45, 48, 10_000]
# On the object-store servers (each kill there costs seconds) every other moment, still spanning
# the claim, the copy and the config write, and one publish that finishes.
STORE_KILL_MOMENTS = [*KILL_MOMENTS[:-1:2], 10_000]

CHILD = """
import json, sys, time
from airflow_savedmodel.location import resolve
from airflow_savedmodel.storage import publish
from airflow_savedmodel.storage.publish import ServingTarget
src, base, config, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])

last = [0]
phase = [1]

def tick(progress):
    # A plain publish on an object store copies twice: into a hidden staging prefix, then into
    # base/<N>, where a watcher can see it. Progress starting over marks the second copy.
    if progress.bytes_done < last[0]:
        phase[0] = 2
    last[0] = progress.bytes_done
    print(f"tick{phase[0]}", progress.bytes_done, flush=True)
    time.sleep(0.002)

target = ServingTarget(resolve(config, options), "ranker") if config else None
result = publish(src, base, base_options=options, chunk_size=65536, concurrency=2, progress=tick,
                 serving=target, lease_seconds=2.0)
print("done", result.version, flush=True)
"""


def make_model(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    layers = [
        DenseLayer(
            rng.standard_normal((4, 512)).astype(np.float32),
            rng.standard_normal(512).astype(np.float32),
            "relu",
        ),
        DenseLayer(rng.standard_normal((512, 512)).astype(np.float32), np.zeros(512, np.float32), "relu"),
        DenseLayer(rng.standard_normal((512, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax"),
    ]
    return Path(export_dense_model(str(root / f"model-{seed}"), layers))


@pytest.fixture(scope="module")
def loader() -> Iterator[TensorFlowLoader]:
    tf = TensorFlowLoader()
    try:
        yield tf
    finally:
        tf.close()


@pytest.fixture(params=["local", "gs", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict[str, Any]]:
    """(base URL, config URL, storage options) on each kind of store."""
    if request.param == "local":
        return str(tmp_path / "serving" / "ranker"), str(tmp_path / "serving" / "models.config"), {}
    store = request.getfixturevalue("gcs" if request.param == "gs" else "s3")
    bucket = store.bucket()
    return f"{bucket}/serving/ranker", f"{bucket}/serving/models.config", store.options


def watcher_fs(url: str, options: dict[str, Any]) -> Any:
    """The watcher's own filesystem instance: no listing cache shared with the publishers."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    return fsspec.filesystem(protocol, skip_instance_cache=True, **options)


def watch(loader: TensorFlowLoader, base: str, options: dict[str, Any], config: str | None) -> ServingWatcher:
    fs = watcher_fs(base, options)
    return ServingWatcher(
        fs,
        fs._strip_protocol(base),
        loader,
        PROBE,
        config=(fs, fs._strip_protocol(config)) if config else None,
        model_name="ranker",
    )


def kill_after(src: Path, base: str, config: str, options: dict[str, Any], ticks: int) -> bool:
    """Publish in a child process and SIGKILL it after ``ticks`` progress reports; True if it finished."""
    return run_python_killed_after(CHILD, [str(src), base, config, json.dumps(options)], ticks)


def test_sigkilled_gated_publishes_never_serve_a_partial_version(
    where: tuple[str, str, dict[str, Any]], loader: TensorFlowLoader, tmp_path: Path
) -> None:
    base, config, options = where
    watcher = watch(loader, base, options, config)
    finished = 0
    moments = KILL_MOMENTS if not options else STORE_KILL_MOMENTS
    with watcher:
        for i, ticks in enumerate(moments):
            src = make_model(tmp_path, i)
            watcher.add_source(src)
            finished += kill_after(src, base, config, options, ticks)
        final = make_model(tmp_path, 1000)
        watcher.add_source(final)
        result = publish(
            str(final), base, base_options=options, serving=ServingTarget(resolve(config, options), "ranker")
        )
        watcher.settle()
    assert watcher.failed == [], [(x.version, x.error) for x in watcher.failed]
    assert watcher.mismatched == []
    assert not watcher.errors, watcher.errors[:3]
    assert 1 <= finished < len(moments)
    assert result.version in watcher.served
    # Whatever the kills left behind is reclaimed once the dead publishers' leases expire.
    time.sleep(2.1)
    gc(base, keep_last=1, stale_staging=0, serving_config_url=config, storage_options=options)
    left = {i.state for i in list_versions(base, options)}
    assert left == {"complete"}


def test_local_publishes_in_plain_mode_never_serve_a_partial_version(
    loader: TensorFlowLoader, tmp_path: Path
) -> None:
    base = str(tmp_path / "serving" / "ranker")
    watcher = watch(loader, base, {}, None)
    with watcher:
        for i, ticks in enumerate(KILL_MOMENTS[::2]):
            src = make_model(tmp_path, i)
            watcher.add_source(src)
            kill_after(src, base, "", {}, ticks)
        watcher.settle()
    assert watcher.loads and watcher.failed == [] and watcher.mismatched == []


def test_retention_beside_concurrent_gated_publishers(
    where: tuple[str, str, dict[str, Any]], loader: TensorFlowLoader, tmp_path: Path
) -> None:
    """Four publishers and a retention loop at once: no publisher fails, no in-flight version is
    removed, every published version was complete when named, and no update of the config is lost."""
    base, config, options = where
    target = ServingTarget(resolve(config, options), "ranker", keep_served=50)
    sources = [make_model(tmp_path, 100 + i) for i in range(8)]
    watcher = watch(loader, base, options, config)
    for src in sources:
        watcher.add_source(src)
    results: list[Any] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    removed: list[str] = []

    def publisher(batch: list[Path]) -> None:
        for src in batch:
            try:
                results.append(publish(str(src), base, base_options=options, serving=target, concurrency=2))
            except BaseException as exc:
                failures.append(exc)

    def retention() -> None:
        while not stop.is_set():
            try:
                removed.extend(
                    gc(
                        base, keep_last=1, stale_staging=0, serving_config_url=config, storage_options=options
                    ).removed
                )
            except BaseException as exc:
                failures.append(exc)

    with watcher:
        sweeper = threading.Thread(target=retention)
        sweeper.start()
        workers = [threading.Thread(target=publisher, args=(sources[i::4],)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop.set()
        sweeper.join()
        watcher.settle()
    assert failures == [], failures
    numbers = sorted(r.version for r in results)
    assert len(set(numbers)) == len(sources)
    model = model_config.find(model_config.read(resolve(config, options)), "ranker")
    assert model is not None and sorted(model.model_version_policy.specific.versions) == numbers
    assert not [url for url in removed if re.search(r"/ranker/\d+$", url)]
    states = {i.version: i.state for i in list_versions(base, options, deep=True)}
    assert all(states[n] == "complete" for n in numbers)
    assert watcher.failed == [] and watcher.mismatched == []
    assert watcher.served == numbers


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_plain_mode_on_object_stores_window_is_failed_loads_only(
    store: str, loader: TensorFlowLoader, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Without the config file a watcher of the base path sees a version while it is copied
    into place. Kills are aimed into that copy (after its first, second ... file lands), where
    the watcher can see base/<N>: saved_model.pb lands strictly last, so what the watcher meets
    is a load that fails for want of saved_model.pb (and is retried), never a version that has
    saved_model.pb without every other file. The figure goes to the docs."""
    bucket = request.getfixturevalue("gcs" if store == "gs" else "s3")
    options = bucket.options
    base = bucket.bucket() + "/serving/ranker"
    watcher = watch(loader, base, options, None)
    into_place = [1, 2, 4]
    with watcher:
        for i, ticks in enumerate(into_place):
            src = make_model(tmp_path, i)
            watcher.add_source(src)
            run_python_killed_after(CHILD, [str(src), base, "", json.dumps(options)], ticks, counting="tick2")
        # Versions killed before saved_model.pb never load: settling waits until every version
        # has been tried once (the watcher keeps retrying a failed load, as TF Serving does).
        watcher.settle()
    assert not watcher.mismatched, watcher.mismatched  # nothing served lacked or changed a file
    for load in watcher.failed:
        assert "saved_model.pb" in (load.error or "") or "SavedModel file does not exist" in (
            load.error or ""
        ), load
    fs = watcher_fs(base, options)
    root = fs._strip_protocol(base)
    for version in list_versions(base, options):
        files = set(fs.find(f"{root}/{version.version}"))
        if f"{root}/{version.version}/saved_model.pb" in files:  # loadable: then it has everything
            assert version.state == "complete" or not version.problems, (version.version, version.problems)
            assert f"{root}/{version.version}/fingerprint.pb" in files, files
            assert any("variables.data" in f for f in files), files
    print(
        f"\n{store} plain mode: {len(watcher.failed)} failed loads, {len(watcher.loads)} loads over "
        f"{len(into_place)} publishes SIGKILLed inside the copy into place"
    )
