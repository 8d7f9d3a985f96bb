"""Retention: remove old versions and abandoned staging areas, claims and leases under a base path.

Never removed: the newest ``keep_last`` servable versions, the newest complete one, versions in
``keep``, versions the serving config names or labels, versions younger than ``min_age``,
anything a live publisher lease names, and anything that is not a numeric version or this
tool's hidden bookkeeping. Versions are listed before leases are read, and a publisher records
its version in its lease before writing under it, so an in-flight version is always seen as
leased. What a lease named is reclaimed once the lease has expired (its publisher died): a
version such a publisher never completed is debris, never counted among the ``keep_last``.
Ages are the store's timestamps against the store's own clock (leases.store_now), so a
machine whose clock runs ahead does not take live work for abandoned.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.location import Location
from airflow_savedmodel.storage import content_index, leases, model_config
from airflow_savedmodel.storage import versions as v


@dataclass
class GcResult:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept, "dry_run": self.dry_run}


def _age_seconds(fs: AbstractFileSystem, info: v.VersionInfo, path: str, now: float) -> float:
    """From the manifest's time, else the newest file's modification time (0 when unknown: young)."""
    created = info.manifest.created_at() if info.manifest else None
    if created is not None:
        return now - created.timestamp()
    stamps = []
    for rel in location.relative_files(fs, path):
        age = leases.age_seconds(fs, location.join(path, rel), now)
        if age is not None:
            stamps.append(age)
    return min(stamps) if stamps else 0.0


def _seconds(value: float | datetime.timedelta) -> float:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def gc(
    base_url: str | Location,
    *,
    keep_last: int = 5,
    min_age: float | datetime.timedelta = 0,
    keep: Iterable[int] = (),
    serving_config_url: str | Location | None = None,
    stale_staging: float | datetime.timedelta = leases.DEFAULT_LEASE_SECONDS,
    dry_run: bool = False,
    storage_options: dict[str, Any] | None = None,
    fs: AbstractFileSystem | None = None,
) -> GcResult:
    """Keep the newest ``keep_last`` servable versions and everything protected; remove the rest.

    ``stale_staging`` is how old an unleased staging area or claim must be before it is taken for
    abandoned (publishers that predate leases, or died before writing one).
    """
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    base = location.resolve(base_url, storage_options, fs)
    fs, path = base
    now = leases.store_now(fs, path)
    result = GcResult(dry_run=dry_run)
    # Everything is listed before the leases are read: a publisher writes its lease before it
    # creates a staging area, claims a number or writes under a version, so whatever is in
    # flight at listing time is named by a lease read afterwards.
    # Entries named like versions that are not directories are not ours to judge or remove.
    found = [i for i in v.versions_of(fs, path) if i.state != v.NOT_A_DIRECTORY]
    found.sort(key=lambda i: i.version, reverse=True)
    staging_areas = v.staging_areas(fs, path)
    claims = v.claimed_versions(fs, path)
    every_lease = leases.leases(fs, path)
    stray = leases.stray_files(fs, path)
    held = [lease for lease in every_lease if lease.live(now)]
    dead = [lease for lease in every_lease if not lease.live(now)]
    abandoned = {lease.staging.rstrip("/") for lease in dead if lease.staging}
    leased_versions = {n for lease in held for n in lease.named_versions()}
    leased_staging = {lease.staging.rstrip("/") for lease in held if lease.staging}
    # Versions a publisher that died was writing and never finished: debris, not versions.
    unfinished = {n for lease in dead for n in lease.named_versions()} - leased_versions
    debris = {i.version for i in found if i.version in unfinished and i.state != v.COMPLETE}
    named: set[int] = set()
    if serving_config_url is not None:
        config = location.resolve(serving_config_url, storage_options)
        named = model_config.named_versions(model_config.read(config), base.url)
    servable = [i for i in found if i.servable and i.version not in debris]
    # The newest complete version is kept even when newer unverified ones (a plain-mode publish
    # still copying in, another tool's export) fill the keep_last slots.
    newest_complete = next((i.version for i in found if i.state == v.COMPLETE), None)
    protected = {i.version for i in servable[:keep_last]} | set(keep) | leased_versions | named
    protected |= {newest_complete} if newest_complete is not None else set()
    min_age_s = _seconds(min_age)

    def remove(target: str) -> None:
        result.removed.append(location.url_of(fs, target))
        if not dry_run:
            location.remove_quietly(fs, target)

    def remove_version(info: v.VersionInfo, target: str) -> None:
        removed_versions.add(info.version)
        remove(target)
        if info.manifest is not None and not dry_run:  # a republish must not look for it
            content_index.forget(fs, path, info.manifest.content_key(), info.version)

    removed_versions: set[int] = set()
    for info in found:
        target = location.join(path, str(info.version))
        if info.version in debris and info.version not in set(keep) | named:
            remove_version(info, target)
        elif info.version in protected or _age_seconds(fs, info, target, now) < min_age_s:
            result.kept.append(info.url)
        else:
            remove_version(info, target)
    stale_s = _seconds(stale_staging)
    for staging, created in staging_areas:
        if staging.rstrip("/") in leased_staging:
            continue
        # Unleased: no live publisher works in it (a publisher leases before it creates one), so
        # the creation time in its name, by its publisher's clock, is good enough.
        if staging.rstrip("/") in abandoned or now - created >= max(stale_s, min_age_s):
            remove(staging)
    remaining = {i.version for i in found} - removed_versions
    for number in claims:
        claim = location.join(path, leases.CLAIMS_DIR, str(number))
        if number in leased_versions:
            continue
        age = leases.age_seconds(fs, claim, now)
        # A claim is needed only while its version is written; one whose version exists (or
        # that is old and unleased) numbers nothing any more.
        if number in remaining or (age is not None and age >= stale_s):
            remove(claim)
    for lease in dead:
        remove(location.join(path, leases.LEASES_DIR, lease.token + ".json"))
    for leftover in stray:  # a lease write that died half way (a live one lasts milliseconds)
        age = leases.age_seconds(fs, leftover, now)
        if age is not None and age >= leases.DEFAULT_LEASE_SECONDS:
            remove(leftover)
    return result
