"""What the Models view costs on a long history: a model's page (its versions with their
states, labels and signers, its config entry, the signatures of stable, every release) for a
model with 1,000 versions and 200 releases, on the GCS test server behind a proxy adding 30 ms
per request; against the obvious way, every version's manifest and every release record read
one after another. The issue's target: under 1 s."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_history import _fill, _template, _without_catalog
from benchmarks.common import Row, gcs_behind_proxy

LATENCY_SECONDS = 0.03
VERSIONS = 1000
RELEASES = 200


def _record(version: int) -> dict[str, Any]:
    checks = [
        {"name": n, "status": "pass", "observed": 1.0, "threshold": 2.0, "message": f"{n} fine"}
        for n in ("available", "requests", "error_rate", "latency_p50", "latency_p95")
    ]
    return {
        "version": version,
        "state": "promoted" if version % 5 else "rolled_back",
        "run_id": f"release/manual__{version}/rollout",
        "started": "2026-12-01T00:00:00+00:00",
        "decided": "2026-12-01T00:05:00+00:00",
        "message": f"promoted version {version} to stable",
        "checks": checks,
    }


def _page(config: Any, resolve: Any) -> dict[str, Any]:
    """What the view's model page reads (airflow_savedmodel/ui/pages.py, without Airflow)."""
    from airflow_savedmodel.release import registry

    ref = registry.find([config], resolve, "ranker")
    doc = registry.model_page(ref)
    doc["signatures"] = registry.signatures(ref, doc["labels"]["stable"])
    return doc


def _obvious(config: Any, resolve: Any) -> int:
    """Each version's state from its manifest and listing, each release record read on its own."""
    from airflow_savedmodel.release import records, registry
    from airflow_savedmodel.storage.versions import versions_of

    ref = registry.find([config], resolve, "ranker")
    with _without_catalog():
        found = versions_of(ref.base.fs, ref.base.path, record=False)
    got = [records.read(ref.base, v.version) for v in found]
    return len([g for g in got if g])


def run() -> list[Row]:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import model_config

    with tempfile.TemporaryDirectory() as tmp_name, gcs_behind_proxy(LATENCY_SECONDS) as (server, options):
        tmp = Path(tmp_name)
        direct = server.store.fs()
        bucket = server.store.bucket()
        base = f"{bucket}/ranker"
        _fill(direct, base, _template(server, tmp), VERSIONS)
        direct.pipe(
            {
                f"{base}/.savedmodel-releases/{v}.json": json.dumps(_record(v)).encode()
                for v in range(VERSIONS - RELEASES + 1, VERSIONS + 1)
            },
            batch_size=4,  # a few at a time, as _fill writes (the test server drops a burst)
        )
        config = resolve(f"{bucket}/models.config", options)
        model_config.serve_version(
            config, "ranker", resolve(base, options), VERSIONS, labels={"stable": VERSIONS}
        )

        def where(url: str) -> Any:
            return resolve(url, options)

        fresh = {"ours": 0.0, "theirs": 0.0}
        for _ in range(3):  # the view builds its filesystem per request: no warm listing cache
            began = time.perf_counter()
            doc = _page(resolve(f"{bucket}/models.config", options), where)
            fresh["ours"] = min(fresh["ours"] or 1e9, time.perf_counter() - began)
            assert len(doc["releases"]) == RELEASES and doc["count"] == VERSIONS
        began = time.perf_counter()
        assert _obvious(resolve(f"{bucket}/models.config", options), where) == RELEASES
        fresh["theirs"] = time.perf_counter() - began
    label = (
        f"{VERSIONS:,} versions and {RELEASES} releases on gs, {LATENCY_SECONDS * 1000:.0f} ms per request"
    )
    return [
        Row(
            f"Models view: a model's page, {label}",
            fresh["ours"],
            fresh["theirs"],
            "s",
            "every version's manifest and every release record, one by one",
            "target: under 1 s (issue 39); the catalog, one recursive listing and one batch of records",
        )
    ]
