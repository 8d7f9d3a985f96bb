"""A catalog of a base path's complete versions: their manifests in one file beside them
(``BASE/.savedmodel-catalog.json``), so that telling every version's state costs one recursive
listing and one read, whatever the history, instead of a manifest read and a listing per version.

The catalog is a cache, never the truth. A version counts as complete from its entry only when
the files listed under it have the sizes the entry records and its manifest is there: the check
a manifest read would make. A version without an entry (published before the catalog existed, by
another tool, or its entry lost to a concurrent writer) or whose files differ is read the old way,
and a complete one is added back; entries of versions that are gone are dropped. A catalog that
is missing, stale or garbled therefore never hides a complete version nor shows a partial one:
it only costs requests until it is rewritten. Writes are one atomic object (or rename) and best
effort: a reader without write access still gets the right answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import SavedModelError
from airflow_savedmodel.storage import manifest as manifests

CATALOG_PATH = ".savedmodel-catalog.json"
SCHEMA = "airflow-savedmodel/catalog/v1"
MAX_CATALOG_BYTES = 128 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A complete version as the catalog remembers it: its manifest, and the manifest object's
    stamp as listings show it (a rewritten manifest gets a new one, so it is read again)."""

    manifest: manifests.Manifest
    stamp: str


# What changes when an object is written again, as listings and info() report it: GCS's
# generation, S3's ETag (the content's MD5), a local file's mtime, a memory file's creation time.
_STAMP_KEYS = ("generation", "ETag", "mtime", "created")


def stamp_of(info: Mapping[str, Any]) -> str:
    for key in _STAMP_KEYS:
        if info.get(key) not in (None, ""):
            return f"{info.get('size')}:{key}={info[key]}"
    return ""  # nothing to tell a rewrite by: never trusted (see matches)


def read(
    fs: AbstractFileSystem, base: str, found: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[int, Entry]:
    """The catalog's entries, ``{version: entry}``; empty when it is missing or unreadable.
    ``found``: a recursive listing of ``base`` the caller has just made (the catalog's size is
    taken from it, and a catalog it does not show is not asked for)."""
    path = location.join(base, CATALOG_PATH)
    size = None
    if found is not None:
        info = found.get(fs._strip_protocol(path))
        if info is None:
            return {}
        size = int(info.get("size") or 0)
    try:
        raw = location.read_file(fs, path, limit=MAX_CATALOG_BYTES, size=size)
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            return {}
        return {
            int(number): Entry(manifests.Manifest.from_json(item["manifest"], path), str(item["stamp"]))
            for number, item in dict(doc.get("versions") or {}).items()
        }
    except (SavedModelError, ValueError, TypeError, AttributeError, KeyError, OSError):
        return {}  # missing, garbled or from elsewhere: the versions are read one by one


def write(fs: AbstractFileSystem, base: str, entries: Mapping[int, Entry]) -> None:
    """Replace the catalog with ``entries`` in one atomic write; a failure is logged, not raised
    (the catalog is rebuilt from the versions by the next reader that can write)."""
    doc = {
        "schema": SCHEMA,
        "versions": {
            str(n): {"stamp": entries[n].stamp, "manifest": entries[n].manifest.to_json()}
            for n in sorted(entries)
        },
    }
    try:
        location.write_atomic(fs, location.join(base, CATALOG_PATH), json.dumps(doc).encode())
    except Exception as exc:  # a read-only reader, a store hiccup: the next writer heals it
        log.debug("catalog of %s not written: %s", location.url_of(fs, base), exc)


def record(fs: AbstractFileSystem, base: str, number: int, manifest: manifests.Manifest) -> None:
    """Add (or replace) version ``number``'s entry after its publish completed."""
    try:
        info = location.fresh_info(fs, location.join(base, str(number), manifests.MANIFEST_PATH))
    except Exception:
        return
    entries = read(fs, base)
    entries[number] = Entry(manifest, stamp_of(info))
    write(fs, base, entries)


def listed(
    fs: AbstractFileSystem, base: str, found: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[int, dict[str, Mapping[str, Any]]]:
    """``{version: {relative path: info}}`` of every file under every numeric version, from one
    recursive listing of ``base`` (paged by the store: a request per 1,000 objects), or from
    ``found``, such a listing the caller has just made."""
    prefix = fs._strip_protocol(base).rstrip("/") + "/"
    out: dict[int, dict[str, Mapping[str, Any]]] = {}
    if found is None:
        fs.invalidate_cache(base)
        try:
            found = fs.find(base, detail=True)
        except FileNotFoundError:
            return out
    for path, info in found.items():
        if not path.startswith(prefix) or info.get("type", "file") not in ("file", "other"):
            continue
        head, _, rel = path[len(prefix) :].partition("/")
        if head.isdigit() and rel:
            out.setdefault(int(head), {})[rel] = info
    return out


def matches(entry: Entry, infos: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the files listed under a version are the ones its entry records (the check a
    manifest read would make, without the read): the same manifest object, every file with its
    size. A local symlink ("other") is never taken on the catalog's word."""
    manifest = infos.get(manifests.MANIFEST_PATH)
    if manifest is None or not entry.stamp or stamp_of(manifest) != entry.stamp:
        return False
    if any(info.get("type", "file") != "file" for info in infos.values()):
        return False
    present = {p: int(i.get("size") or 0) for p, i in infos.items() if p != manifests.MANIFEST_PATH}
    return present == {f.path: f.size for f in entry.manifest.files}
