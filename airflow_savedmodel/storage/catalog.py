"""A catalog of a base path's complete versions: their manifests in small objects beside them,
under ``BASE/.savedmodel-catalog/``, so that telling every version's state costs one recursive
listing and a few reads whatever the history, and recording a new version one small write.

Every object (a *part*) has one form, ``{"schema", "versions": {N: {"stamp", "manifest"}}}``:

- ``entry-<id>.json`` holds the versions one writer learned: the publish that completed a
  version appends one;
- ``block-<B>-<id>.json`` holds versions ``B*BLOCK`` to ``(B+1)*BLOCK - 1``, written when entries
  are folded (*compacted*) into their block.

``<id>`` is the writer's clock in nanoseconds and a random tail; where two parts name one version
the later one counts. Once ``COMPACT_AFTER`` entries have gathered, the publish that sees them
folds them into their blocks (rewriting only the blocks they fall in, never the whole history),
deletes the blocks whose versions are all gone, and then deletes exactly the parts it folded.
Compactions running at once lose nothing: each deletes only parts whose versions it has
written into a block of its own. A reader that finds a part gone between its listing and its
read lists again.

The catalog is a cache, never the truth. A version counts as complete from its entry only when
the files listed under it have the sizes the entry records and its manifest object is the one
the entry saw: the check a manifest read would make. A version without an entry (published before
the catalog existed, by another tool, or a publisher that died between its rename and its
append) or whose files differ is read the old way, and a complete one is appended. A catalog that
is missing, stale or garbled therefore never hides a complete version nor shows a partial one:
it only costs requests until it is healed. Writes are best effort: a reader without write
access still gets the right answer.

The first layout, one file ``BASE/.savedmodel-catalog.json``, is read as a part and folded into
blocks (and removed) by the first compaction.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import SavedModelError
from airflow_savedmodel.storage import manifest as manifests

CATALOG_DIR = ".savedmodel-catalog"
LEGACY_PATH = ".savedmodel-catalog.json"
SCHEMA = "airflow-savedmodel/catalog/v1"
MAX_PART_BYTES = 128 << 20
BLOCK = 256  # versions per block: what a compaction rewrites at most
COMPACT_AFTER = 32  # entries gathered before a publish folds them: what a reader reads at most
_LEARN_AS_BLOCK = 8  # a reader that learned this many versions of one block writes them as a block

_PART_NAME = re.compile(r"^(?:entry|block-(\d+))-\d{20}-[0-9a-f]{8}\.json$")

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


@dataclass(frozen=True)
class Part:
    """One catalog object as listed: its path, its order among the parts (its id; the legacy
    file comes first), and the block it holds (None for an entry or the legacy file)."""

    path: str
    order: str
    block: int | None
    size: int | None


def _new_id() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _root(fs: AbstractFileSystem, base: str) -> str:
    return str(fs._strip_protocol(location.join(base, CATALOG_DIR))).rstrip("/")


def _part(path: str, size: Any) -> Part | None:
    name = path.rsplit("/", 1)[-1]
    match = _PART_NAME.match(name)
    if match is None:
        return None
    block = int(match.group(1)) if match.group(1) is not None else None
    order = name.split("-", 2 if block is not None else 1)[-1]
    return Part(path, order, block, None if size is None else int(size))


def parts(
    fs: AbstractFileSystem,
    base: str,
    found: Mapping[str, Mapping[str, Any]] | None = None,
    legacy_file: bool = True,
) -> list[Part]:
    """The catalog's parts, in order, from ``found`` (a recursive listing of ``base`` the caller
    has just made) or from a fresh listing of the catalog's directory (and, with ``legacy_file``,
    a look for the first layout's single file)."""
    root = _root(fs, base)
    legacy = str(fs._strip_protocol(location.join(base, LEGACY_PATH)))
    out: list[Part] = []
    if found is not None:
        for path, info in found.items():
            if path == legacy:
                out.append(Part(path, "", None, int(info.get("size") or 0)))
            elif path.startswith(root + "/"):
                part = _part(path, info.get("size"))
                if part is not None:
                    out.append(part)
    else:
        fs.invalidate_cache(root)
        try:
            listed = fs.ls(root, detail=True)
        except FileNotFoundError:
            listed = []
        for info in listed:
            part = _part(str(info["name"]), info.get("size"))
            if part is not None:
                out.append(part)
        if legacy_file and fs.exists(legacy):
            out.append(Part(legacy, "", None, None))
    return sorted(out, key=lambda p: p.order)


def _decode(raw: bytes, where: str) -> dict[int, Entry] | None:
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            return None
        return {
            int(number): Entry(manifests.Manifest.from_json(item["manifest"], where), str(item["stamp"]))
            for number, item in dict(doc.get("versions") or {}).items()
        }
    except (SavedModelError, ValueError, TypeError, AttributeError, KeyError):
        return None  # garbled or from elsewhere: its versions are read one by one


class _Vanished(Exception):
    """A listed part was deleted (folded by a compaction) before it was read."""


def _read_parts(
    fs: AbstractFileSystem, listed: Iterable[Part], strict: bool = False
) -> dict[Part, dict[int, Entry] | None]:
    """Every part's versions, read at once (an async store fetches them concurrently); None for
    a part that is garbled or too large. With ``strict`` (a compaction, which deletes what it
    read), a part the store failed to return raises instead of counting as garbled."""
    listed = list(listed)
    wanted = [p for p in listed if p.size is None or p.size <= MAX_PART_BYTES]
    got: dict[str, Any] = {}
    if wanted:
        paths = [p.path for p in wanted]
        try:
            got = fs.cat(paths, on_error="return") if len(paths) > 1 else {paths[0]: fs.cat_file(paths[0])}
        except FileNotFoundError as exc:
            raise _Vanished() from exc
    out: dict[Part, dict[int, Entry] | None] = {}
    for part in listed:
        raw = got.get(part.path)
        if isinstance(raw, FileNotFoundError):
            raise _Vanished()
        if strict and isinstance(raw, BaseException):
            raise OSError(f"catalog part {part.path} not read: {raw}")
        if isinstance(raw, bytes) and len(raw) <= MAX_PART_BYTES:
            out[part] = _decode(raw, location.url_of(fs, part.path))
        else:
            out[part] = None  # too large, or a store error: the versions are read one by one
    return out


def read(
    fs: AbstractFileSystem, base: str, found: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[int, Entry]:
    """The catalog's entries, ``{version: entry}`` (where two parts name a version, the later
    one's); empty when it is missing or unreadable. ``found``: a recursive listing of ``base``
    the caller has just made."""
    for attempt in range(3):
        try:
            read_now = _read_parts(fs, parts(fs, base, found if attempt == 0 else None))
            break
        except _Vanished:
            continue  # a compaction folded a part in between: its blocks are there now
        except Exception as exc:  # a cache: whatever the store says, the versions are read one by one
            log.debug("catalog of %s not read: %s", location.url_of(fs, base), exc)
            return {}
    else:
        return {}
    entries: dict[int, Entry] = {}
    for versions in read_now.values():  # in the parts' order
        entries.update(versions or {})
    return entries


def _document(entries: Mapping[int, Entry]) -> bytes:
    return json.dumps(
        {
            "schema": SCHEMA,
            "versions": {
                str(n): {"stamp": entries[n].stamp, "manifest": entries[n].manifest.to_json()}
                for n in sorted(entries)
            },
        }
    ).encode()


def _write(fs: AbstractFileSystem, base: str, name: str, entries: Mapping[int, Entry]) -> bool:
    try:
        location.write_atomic(fs, location.join(base, CATALOG_DIR, name), _document(entries))
        return True
    except Exception as exc:  # a read-only reader, a store hiccup: the next writer heals it
        log.debug("catalog of %s not written: %s", location.url_of(fs, base), exc)
        return False


def append(fs: AbstractFileSystem, base: str, entries: Mapping[int, Entry]) -> bool:
    """Add ``entries`` as one new part; best effort (False when it could not be written)."""
    return bool(entries) and _write(fs, base, f"entry-{_new_id()}.json", entries)


def learn(fs: AbstractFileSystem, base: str, entries: Mapping[int, Entry]) -> None:
    """What a reader learned by reading versions the catalog did not vouch for: many versions of
    one block (a history published before the catalog) are written as that block, the rest as one
    entry part, so a reader's writes stay few whatever it learned."""
    by_block: dict[int, dict[int, Entry]] = {}
    for number, entry in entries.items():
        by_block.setdefault(number // BLOCK, {})[number] = entry
    rest: dict[int, Entry] = {}
    for block, held in sorted(by_block.items()):
        if len(held) >= _LEARN_AS_BLOCK:
            _write(fs, base, f"block-{block}-{_new_id()}.json", held)
        else:
            rest.update(held)
    append(fs, base, rest)


def record(fs: AbstractFileSystem, base: str, number: int, manifest: manifests.Manifest) -> None:
    """Append version ``number``'s entry after its publish completed (one small write), and fold
    the entries into their blocks once ``COMPACT_AFTER`` have gathered."""
    try:
        info = location.fresh_info(fs, location.join(base, str(number), manifests.MANIFEST_PATH))
    except Exception:
        return
    if not append(fs, base, {number: Entry(manifest, stamp_of(info))}):
        return
    try:
        listed = parts(fs, base, legacy_file=False)
    except Exception:
        return
    if sum(1 for p in listed if p.block is None) >= COMPACT_AFTER:
        compact(fs, base)


def _version_numbers(fs: AbstractFileSystem, base: str) -> set[int]:
    return {int(name) for name, kind in location.children(fs, base, refresh=True) if name.isdigit()}


def compact(fs: AbstractFileSystem, base: str) -> None:
    """Fold the entry parts (and the legacy file) into the blocks their versions fall in, and a
    block written twice (by compactions at once) into one, dropping versions that are gone;
    delete the blocks none of whose versions remain. Only the blocks touched are read and
    rewritten. Best effort: a failure leaves every part in place."""
    try:
        listed = parts(fs, base)
        numbers = _version_numbers(fs, base)
        loose = [p for p in listed if p.block is None]
        read_loose = _read_parts(fs, loose, strict=True)
        blocks = [p for p in listed if p.block is not None]
        touched = {n // BLOCK for versions in read_loose.values() for n in (versions or {})}
        written = [p.block for p in blocks if p.block is not None]
        touched |= {b for b in written if written.count(b) > 1}
        dead = [p for p in blocks if p.block not in touched and not _any_in_block(numbers, p.block)]
        read_blocks = _read_parts(fs, [p for p in blocks if p.block in touched], strict=True)
    except Exception as exc:  # another compaction is at it, or the store failed: nothing deleted
        log.debug("catalog of %s not compacted: %s", location.url_of(fs, base), exc)
        return
    merged: dict[int, Entry] = {}
    every = {**read_blocks, **read_loose}
    for part in sorted(every, key=lambda p: p.order):  # a later part's entry counts
        merged.update(every[part] or {})
    for block in sorted(touched):
        held = {n: e for n, e in merged.items() if n // BLOCK == block and n in numbers}
        if held and not _write(fs, base, f"block-{block}-{_new_id()}.json", held):
            return  # nothing deleted: the entries are still there to be folded next time
    _remove(fs, [p.path for p in [*read_loose, *read_blocks, *dead]])


def _remove(fs: AbstractFileSystem, paths: list[str]) -> None:
    """Delete ``paths`` (a batch where the store has one); a part another compaction removed
    first is no error, and one left behind is folded again next time: nothing is lost."""
    if not paths:
        return
    try:
        fs.rm(paths)
        return
    except Exception:
        pass
    for path in paths:
        try:
            fs.rm_file(path)
        except Exception as exc:
            log.debug("catalog part %s not removed: %s", location.url_of(fs, path), exc)


def _any_in_block(numbers: set[int], block: int | None) -> bool:
    assert block is not None
    return any(n // BLOCK == block for n in numbers)


def listed(
    fs: AbstractFileSystem, base: str, found: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[int, dict[str, Mapping[str, Any]]]:
    """``{version: {relative path: info}}`` of every file under every numeric version, from one
    recursive listing of ``base``, or from ``found``, such a listing the caller has just made."""
    prefix = fs._strip_protocol(base).rstrip("/") + "/"
    out: dict[int, dict[str, Mapping[str, Any]]] = {}
    if found is None:
        found = location.find_fresh(fs, base)
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
