"""Versions under a model base path, as TensorFlow Serving sees them: numeric sub-directories.

Each version is ``complete`` (its manifest matches), ``unverified`` (a SavedModel without our
manifest, e.g. written by another tool) or ``partial`` (files missing or differing: a copy
still running or one that died). An entry named like a version that is not a directory (a
symlink, a file) is ``not-a-directory``: listed with what it is, never published into, never
removed. Hidden staging areas and version claims live beside them
under non-numeric names that TensorFlow Serving ignores (storage/leases.py).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format.model import SAVED_MODEL_PB, SAVED_MODEL_PBTXT, has_saved_model
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage.leases import CLAIMS_DIR

COMPLETE = "complete"
UNVERIFIED = "unverified"
PARTIAL = "partial"
NOT_A_DIRECTORY = "not-a-directory"
STAGING_PREFIX = ".savedmodel-staging-"
_STAGING_RE = re.compile(r"^\.savedmodel-staging-(\d+)-[0-9a-f]+$")


@dataclass
class VersionInfo:
    version: int
    url: str
    state: str
    manifest: manifests.Manifest | None = None
    problems: list[str] | None = None

    @property
    def servable(self) -> bool:
        return self.state in (COMPLETE, UNVERIFIED)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "state": self.state,
            "created": self.manifest.created if self.manifest else None,
            "fingerprint": self.manifest.fingerprint if self.manifest else None,
            "bytes": self.manifest.total_bytes if self.manifest else None,
            "problems": self.problems or [],
        }


def version_numbers(fs: AbstractFileSystem, base: str) -> list[int]:
    return _numbered(fs, base)[0]


def numbered(fs: AbstractFileSystem, base: str) -> tuple[list[int], list[tuple[int, str]]]:
    """From one listing of ``base``: its version directories, and (number, what it is) of the
    entries named like a version that are not directories."""
    return _numbered(fs, base)


def _numbered(
    fs: AbstractFileSystem, base: str, listing: location.Listing | None = None
) -> tuple[list[int], list[tuple[int, str]]]:
    """From one fresh listing of ``base`` (or from ``listing``, a recursive one of a store the
    caller has just made: a version directory there is a name with objects below it): its version
    directories, and (number, what it is) of the entries named like a version that are not
    directories."""
    if listing is not None and not location.is_local(fs):
        prefix = fs._strip_protocol(base).rstrip("/") + "/"
        dirs: set[int] = set()
        files: set[int] = set()
        for path in listing.infos:
            head, _, rel = path[len(prefix) :].partition("/") if path.startswith(prefix) else ("", "", "")
            if head.isdigit():
                (dirs if rel else files).add(int(head))
        return sorted(dirs), sorted((n, "file") for n in files)
    numbers, others = [], []
    if location.is_local(fs):  # one directory read, no stat per entry (d_type says what it is)
        try:
            with os.scandir(fs._strip_protocol(base)) as entries:
                for entry in entries:
                    if not entry.name.isdigit():
                        continue
                    if entry.is_dir(follow_symlinks=False):  # a symlink is never taken for one
                        numbers.append(int(entry.name))
                    else:
                        kind = "symlink" if entry.is_symlink() else ("file" if entry.is_file() else "other")
                        others.append((int(entry.name), kind))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return sorted(numbers), sorted(others)
    for name, kind in location.children(fs, base, refresh=True):
        if not name.isdigit():
            continue
        if kind == "directory":
            numbers.append(int(name))
        else:
            others.append((int(name), "file" if kind == "file" else kind))
    return sorted(numbers), sorted(others)


def state_of(
    fs: AbstractFileSystem, path: str, deep: bool = False, sizes: Mapping[str, int] | None = None
) -> tuple[str, manifests.Manifest | None, list[str]]:
    """A version's state; ``sizes``: its files' sizes from a listing the caller has just made
    (then only the manifest is read, and nothing when the listing has none)."""
    try:
        if sizes is not None and manifests.MANIFEST_PATH not in sizes:
            manifest = None
        else:
            manifest = manifests.read(fs, path, None if sizes is None else sizes[manifests.MANIFEST_PATH])
    except FormatError as exc:
        return PARTIAL, None, [exc.problem]
    if manifest is not None:
        problems = manifests.check(fs, path, manifest, deep=deep, sizes=sizes)
        return (COMPLETE if not problems else PARTIAL), manifest, problems
    if sizes is not None:
        has_model = any(name in sizes for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT))
    else:
        has_model = has_saved_model(fs, path)
    return (UNVERIFIED, None, []) if has_model else (PARTIAL, None, ["no saved_model.pb and no manifest"])


def list_versions(
    base_url: str | location.Location,
    storage_options: dict[str, Any] | None = None,
    deep: bool = False,
    fs: AbstractFileSystem | None = None,
) -> list[VersionInfo]:
    """Every numeric version under ``base_url``, oldest first, with its state."""
    filesystem, base = location.resolve(base_url, storage_options, fs)
    return versions_of(filesystem, base, deep)


def versions_of(
    fs: AbstractFileSystem,
    base: str,
    deep: bool = False,
    record: bool = True,
    listing: location.Listing | None = None,
) -> list[VersionInfo]:
    """Every version's state. Without ``deep``, a listing of the base path, a recursive one and
    the catalog (storage/catalog.py) answer for every version the catalog vouches for; the others
    have their manifest read and checked against the recursive listing, and the catalog is brought
    up to date when that found something new (unless ``record`` is off: a watcher that polls
    while versions are written leaves the catalog to the publishers, who record each version they
    complete). ``listing``: the recursive listing of ``base`` the caller has just made (a
    triggerer's shared poll), used instead of making another."""
    return _tell(fs, base, deep, record, listing=listing).versions


@dataclass(frozen=True)
class Told:
    """The versions under a base path as told from one listing, and the catalog entries
    (``{version: storage.catalog.Entry}``) that vouch for its complete ones."""

    versions: list[VersionInfo]
    entries: Mapping[int, Any]


def told_from(
    fs: AbstractFileSystem, base: str, listing: location.Listing, before: Told | None = None
) -> Told:
    """The versions under ``base`` from ``listing``, a recursive listing of it just made, read
    only (the triggers' telling). ``before``: the telling of an older listing of the same base;
    its entries are trusted wherever the listed files still match them, as the catalog's would
    be, so after the first telling a new version costs one read, its manifest's, and the catalog
    is not read again."""
    return _tell(fs, base, False, False, listing=listing, before=before)


def _tell(
    fs: AbstractFileSystem,
    base: str,
    deep: bool,
    record: bool,
    *,
    listing: location.Listing | None = None,
    before: Told | None = None,
) -> Told:
    from airflow_savedmodel.storage import catalog

    out = []
    numbers, others = _numbered(fs, base, listing)
    found: Mapping[str, Mapping[str, Any]] | None = None if listing is None else listing.infos
    if numbers and not deep and found is None and not location.is_local(fs):
        found = location.find_fresh(fs, base)  # one listing for the catalog and the versions
    if deep or not numbers:
        entries: dict[int, Any] = {}
    else:
        entries = (
            dict(before.entries)
            if before is not None
            else catalog.read(fs, base, None if location.is_local(fs) else found)
        )
    listed = catalog.listed(fs, base, found) if numbers and not deep else {}
    # On a local disk the version's own listing resolves symlinks (relative_infos); a store's
    # recursive listing is already the truth of what is there.
    reuse = not deep and not location.is_local(fs)
    learned: dict[int, Any] = {}
    for number in numbers:
        path = location.join(base, str(number))
        entry = entries.get(number)
        infos = listed.get(number, {})
        if entry is not None and catalog.matches(entry, infos):
            out.append(VersionInfo(number, location.url_of(fs, path), COMPLETE, entry.manifest, []))
            continue
        sizes = {rel: int(info.get("size") or 0) for rel, info in infos.items()} if reuse else None
        state, manifest, problems = state_of(fs, path, deep, sizes)
        out.append(VersionInfo(number, location.url_of(fs, path), state, manifest, problems))
        stamp = catalog.stamp_of(infos.get(manifests.MANIFEST_PATH) or {})
        if not deep and state == COMPLETE and manifest is not None and stamp:
            entries[number] = learned[number] = catalog.Entry(manifest, stamp)
        elif entry is not None:  # its files no longer match what the catalog recorded
            del entries[number]
    if record and learned:
        catalog.learn(fs, base, learned)
    for number, kind in others:
        url = location.url_of(fs, location.join(base, str(number)))
        out.append(VersionInfo(number, url, NOT_A_DIRECTORY, None, [f"named like a version but a {kind}"]))
    kept = {n: e for n, e in entries.items() if n in numbers}
    return Told(sorted(out, key=lambda info: info.version), kept)


def staging_areas(fs: AbstractFileSystem, base: str) -> list[tuple[str, int]]:
    """(path, creation unix time) of every staging area under ``base``."""
    out = []
    for name, _ in location.children(fs, base, refresh=True):
        match = _STAGING_RE.match(name)
        if match:
            out.append((location.join(base, name), int(match.group(1))))
    return out


def new_staging(base: str) -> str:
    return location.join(base, f"{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:12]}")


def claimed_versions(fs: AbstractFileSystem, base: str) -> list[int]:
    root = location.join(base, CLAIMS_DIR)
    return sorted({int(n) for n, _ in location.children(fs, root, refresh=True) if n.isdigit()})


# ---- readiness: what sensors and triggers wait for -------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """A wait's answer: ``found`` (a JSON summary) once done, else what is still missing."""

    found: dict[str, Any] | None
    waiting_for: str

    @property
    def done(self) -> bool:
        return self.found is not None


def _unsigned(fs: AbstractFileSystem, path: str) -> bool:
    return not fs.exists(location.join(path, manifests.SIGNATURE_PATH))


def model_readiness(fs: AbstractFileSystem, path: str, deep: bool = False, signed: bool = False) -> Readiness:
    """Ready when the model's manifest matches or, for a model without one (written by another
    tool), when it validates (with ``signed``, once it has its signature, model.sig, too: which
    the caller then verifies); otherwise says what is missing."""
    from airflow_savedmodel.format.model import missing_model_error
    from airflow_savedmodel.format.validate import validate

    url = location.url_of(fs, path)
    if not has_saved_model(fs, path):
        return Readiness(None, missing_model_error(fs, path).problem)
    if signed and _unsigned(fs, path):
        return Readiness(None, f"not signed yet (no {manifests.SIGNATURE_PATH})")
    state, manifest, problems = state_of(fs, path, deep)
    if state == COMPLETE and manifest is not None:
        return Readiness({"url": url, "state": state, "fingerprint": manifest.fingerprint}, "")
    if state == UNVERIFIED:
        report = validate(path, tags=None, required_signatures=(), deep=deep, op_policy="off", fs=fs)
        if report.valid:
            fingerprint = manifests.fingerprint_of(fs, path)  # fingerprint.pb, when the producer wrote one
            return Readiness({"url": url, "state": state, "fingerprint": fingerprint}, "")
        errors = [f"{_relative(f.file, url)}{f.message}" for f in report.findings if f.severity == "error"]
        return Readiness(None, "not valid yet: " + "; ".join(errors[:3]))
    return Readiness(None, "incomplete: " + "; ".join(problems[:3]))


def _relative(file: str | None, url: str) -> str:
    if not file:
        return ""
    return (file[len(url) :].lstrip("/") if file.startswith(url) else file) + ": "


def newer_version_readiness(
    fs: AbstractFileSystem,
    base: str,
    newer_than: int | None,
    signed: bool = False,
    found: list[VersionInfo] | None = None,
) -> Readiness:
    """The newest complete version above ``newer_than`` (any, if None) under ``base`` (with
    ``signed``: one that has its signature, model.sig, which the caller then verifies).
    ``found``: the versions as :func:`versions_of` told them (triggers watching one base path
    share one telling)."""
    found = versions_of(fs, base) if found is None else found
    candidates = [i for i in found if newer_than is None or i.version > int(newer_than)]
    complete = [i for i in candidates if i.state == COMPLETE]
    if signed:
        unsigned = [i for i in complete if _unsigned(fs, location.join(base, str(i.version)))]
        complete = [i for i in complete if i not in unsigned]
        if not complete and unsigned:
            return Readiness(
                None, "; ".join(f"version {i.version} not signed (no model.sig)" for i in unsigned)
            )
    if complete:
        return Readiness(max(complete, key=lambda i: i.version).to_json(), "")
    above = "" if newer_than is None else f" above {newer_than}"
    if not candidates:
        newest = max((i.version for i in found), default=None)
        return Readiness(None, f"no version{above} (newest: {newest if newest is not None else 'none'})")
    return Readiness(
        None,
        "; ".join(
            f"version {i.version} {i.state}" + (f" ({(i.problems or [''])[0]})" if i.problems else "")
            for i in candidates
        ),
    )
