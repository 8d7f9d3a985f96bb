"""Retention: remove old versions and stale staging areas under a serving base path.

Never removes the newest servable version, versions listed in ``keep``, versions younger than
``min_age``, or anything that is not a numeric version, a staging area or a version claim.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel.format import location
from airflow_savedmodel.format.model import SAVED_MODEL_PB, SAVED_MODEL_PBTXT
from airflow_savedmodel.storage import versions as v

DEFAULT_STALE_STAGING = 24 * 3600.0


@dataclass
class GcResult:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept, "dry_run": self.dry_run}


def _age_seconds(fs: AbstractFileSystem, info: v.VersionInfo, path: str, now: float) -> float:
    created = info.manifest.created_at() if info.manifest else None
    if created is not None:
        return now - created.timestamp()
    for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT):
        try:
            modified = fs.modified(location.join(path, name))
        except (FileNotFoundError, NotImplementedError, OSError):
            continue
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=datetime.UTC)
        return now - modified.timestamp()
    return float("inf")


def _seconds(value: float | datetime.timedelta) -> float:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def gc(
    base_url: str,
    *,
    keep_last: int = 5,
    min_age: float | datetime.timedelta = 0,
    keep: Iterable[int] = (),
    stale_staging: float | datetime.timedelta = DEFAULT_STALE_STAGING,
    dry_run: bool = False,
    storage_options: dict[str, Any] | None = None,
    fs: AbstractFileSystem | None = None,
) -> GcResult:
    """Keep the newest ``keep_last`` servable versions (and the newest servable one always); remove the rest."""
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    fs, base = location.resolve(base_url, storage_options, fs)
    now = time.time()
    keep_set = set(keep)
    result = GcResult(dry_run=dry_run)
    versions = sorted(v.versions_of(fs, base), key=lambda i: i.version, reverse=True)
    servable = [i for i in versions if i.servable]
    protected = {i.version for i in servable[:keep_last]} | keep_set
    min_age_s = _seconds(min_age)
    existing = {i.version for i in versions}
    for info in versions:
        path = location.join(base, str(info.version))
        young = _age_seconds(fs, info, path, now) < min_age_s
        if info.version in protected or young:
            result.kept.append(info.url)
            continue
        result.removed.append(info.url)
        if not dry_run:
            fs.rm(path, recursive=True)
    stale_s = _seconds(stale_staging)
    for path, created in v.staging_areas(fs, base):
        if now - created >= max(stale_s, min_age_s):
            result.removed.append(location.url_of(fs, path))
            if not dry_run:
                fs.rm(path, recursive=True)
    # A claim only matters until its version directory exists; claims above the newest
    # directory may belong to a publisher that is copying right now.
    newest = max(v.version_numbers(fs, base) if not dry_run else existing, default=0)
    for number in v.claimed_versions(fs, base):
        if number <= newest:
            claim = location.join(base, v.CLAIMS_DIR, str(number))
            result.removed.append(location.url_of(fs, claim))
            if not dry_run:
                fs.rm(claim, recursive=True)
    return result
