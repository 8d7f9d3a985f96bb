"""Publish a SavedModel as a new version under a serving base path, complete or not at all.

The model is first copied into a hidden staging area beside the versions and verified. On a
local or POSIX filesystem the staging directory is then renamed to ``base/<version>``: one
atomic step, which also fails if another publisher took that number first. On object stores
(where a rename is a copy) the version number is claimed with a create-if-absent write, the
staged files are copied server-side into ``base/<version>/`` with variables and assets first
and saved_model.pb last, and the final prefix is verified against the manifest.

Publishing content that an existing complete version already holds returns that version and
writes nothing, so Airflow task retries are safe.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format import location
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage import versions as v
from airflow_savedmodel.storage.checksums import CHUNK, is_local
from airflow_savedmodel.storage.transfer import ProgressCallback, copy_tree

MAX_CLAIM_ATTEMPTS = 100


@dataclass
class PublishResult:
    version: int
    url: str
    created: bool  # False when an existing version already held this content
    manifest: manifests.Manifest
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "created": self.created,
            "fingerprint": self.manifest.fingerprint,
            "bytes": self.manifest.total_bytes,
            "files": len(self.manifest.files),
            "seconds": round(self.seconds, 3),
        }


def _same_content(fs: AbstractFileSystem, base: str, manifest: manifests.Manifest) -> v.VersionInfo | None:
    key = manifest.content_key()
    for info in reversed(v.versions_of(fs, base)):
        if info.state == v.COMPLETE and info.manifest is not None and info.manifest.content_key() == key:
            return info
    return None


def publish(
    src_url: str,
    base_url: str,
    *,
    version: int | str = "auto",
    src_options: dict[str, Any] | None = None,
    base_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    concurrency: int = 8,
    chunk_size: int = CHUNK,
    retries: int = 3,
    progress: ProgressCallback | None = None,
    src_fs: AbstractFileSystem | None = None,
    base_fs: AbstractFileSystem | None = None,
) -> PublishResult:
    """Publish the model at ``src_url`` as ``base_url/<version>``; ``version`` is an int or "auto" (next integer)."""
    if version != "auto" and (not isinstance(version, int) or version < 0):
        raise StorageError(f"version must be 'auto' or a non-negative integer, not {version!r}", base_url)
    started = time.monotonic()
    src_fs, src = location.resolve(src_url, src_options, src_fs)
    fs, base = location.resolve(base_url, base_options, base_fs)
    fs.makedirs(base, exist_ok=True)
    staging = v.new_staging(base)
    try:
        manifest, _ = copy_tree(
            src_fs,
            src,
            fs,
            staging,
            concurrency=concurrency,
            chunk_size=chunk_size,
            retries=retries,
            progress=progress,
            source_url=location.url_of(src_fs, src),
        )
        existing = _same_content(fs, base, manifest)
        if existing is not None and version in ("auto", existing.version):
            return PublishResult(
                existing.version,
                existing.url,
                False,
                existing.manifest or manifest,
                time.monotonic() - started,
            )
        if is_local(fs):
            number = _rename_into_place(fs, base, staging, version, overwrite)
        else:
            number = _copy_into_place(
                fs,
                base,
                staging,
                version=version,
                overwrite=overwrite,
                manifest=manifest,
                concurrency=concurrency,
                chunk_size=chunk_size,
                retries=retries,
                progress=progress,
            )
    finally:
        location.remove_quietly(fs, staging)
    final = location.join(base, str(number))
    return PublishResult(number, location.url_of(fs, final), True, manifest, time.monotonic() - started)


def _next_number(fs: AbstractFileSystem, base: str) -> int:
    taken = v.version_numbers(fs, base) + v.claimed_versions(fs, base)
    return max(taken, default=0) + 1


def _rename_into_place(
    fs: AbstractFileSystem, base: str, staging: str, version: int | str, overwrite: bool
) -> int:
    for _ in range(MAX_CLAIM_ATTEMPTS):
        number = _next_number(fs, base) if version == "auto" else int(version)
        target = location.join(base, str(number))
        if version != "auto" and overwrite and os.path.exists(target):
            old = location.sibling(target, "old")
            os.rename(target, old)
            os.rename(staging, target)
            fs.rm(old, recursive=True)
            return number
        try:
            if os.path.exists(target):
                raise FileExistsError(errno.EEXIST, "exists", target)
            os.rename(staging, target)  # atomic; refuses a non-empty existing directory
            return number
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise StorageError(f"moving the staged model into place failed: {exc}", target) from exc
            if version != "auto":
                raise StorageError("version exists (pass overwrite to replace it)", target) from None
    raise StorageError(f"no free version after {MAX_CLAIM_ATTEMPTS} attempts", base)


def _copy_into_place(
    fs: AbstractFileSystem,
    base: str,
    staging: str,
    *,
    version: int | str,
    overwrite: bool,
    manifest: manifests.Manifest,
    concurrency: int,
    chunk_size: int,
    retries: int,
    progress: ProgressCallback | None,
) -> int:
    token = f"{int(time.time())}-{uuid.uuid4().hex}"
    for _ in range(MAX_CLAIM_ATTEMPTS):
        number = _next_number(fs, base) if version == "auto" else int(version)
        target = location.join(base, str(number))
        exists = fs.exists(target)
        if exists and not (version != "auto" and overwrite):
            if version != "auto":
                raise StorageError(
                    "version exists (pass overwrite to replace it)", location.url_of(fs, target)
                )
            continue
        if not v.claim(fs, base, number, token) and not (version != "auto" and overwrite):
            if version != "auto":
                raise StorageError("another publisher claimed this version", location.url_of(fs, target))
            continue
        if exists:
            fs.rm(target, recursive=True)
        copy_tree(
            fs,
            staging,
            fs,
            target,
            concurrency=concurrency,
            chunk_size=chunk_size,
            retries=retries,
            progress=progress,
            source_url=manifest.source,
        )
        final = manifests.read(fs, target)
        problems = manifests.check(fs, target, manifest, deep=False)
        if final is None or final.content_key() != manifest.content_key() or problems:
            raise StorageError(
                "published version does not match the staged manifest: " + "; ".join(problems), target
            )
        return number
    raise StorageError(f"no free version after {MAX_CLAIM_ATTEMPTS} attempts", base)
