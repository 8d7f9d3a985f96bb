"""What is under a path: recursive listings (and the key two listings are compared by),
direct children, fresh ``info``, and which local entries are not regular files."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.location.places import is_local


def relative_files(
    fs: AbstractFileSystem, root: str, model: str | None = None, skip_irregular: bool = False
) -> list[str]:
    """Every file below ``root`` as a path relative to it, sorted (see relative_infos)."""
    return sorted(relative_infos(fs, root, model, skip_irregular))


def relative_sizes(fs: AbstractFileSystem, root: str, model: str | None = None) -> dict[str, int]:
    """``{relative path: size}`` of every file below ``root`` (empty when it does not exist)."""
    return {rel: int(info.get("size") or 0) for rel, info in relative_infos(fs, root, model).items()}


def relative_infos(
    fs: AbstractFileSystem, root: str, model: str | None = None, skip_irregular: bool = False
) -> dict[str, dict[str, Any]]:
    """``{relative path: fsspec info}`` of every file below ``root`` (empty when it does not exist).

    On a local disk a symlink to a regular file inside ``model`` (default ``root``: the model
    directory the listing is part of) counts as that file (TensorFlow reads through it, so a copy
    carries its content); any other entry that is not a regular file or a directory (a link
    leaving the model, a FIFO, a device, a socket) is refused with a FormatError rather than
    silently left out (or, with ``skip_irregular``, left out: see irregular_files).
    """
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    found = fs.find(root, detail=True)
    out = {}
    for p, found_info in found.items():
        if not p.startswith(prefix):
            continue
        info, kind = found_info, found_info.get("type", "file")
        if kind == "other" and is_local(fs):
            problem = file_kind_problem(p, model or root)
            if problem and skip_irregular:
                continue
            if problem:
                raise FormatError(problem, p)
            info, kind = {**info, "type": "file", "size": os.stat(p).st_size}, "file"
        if kind == "file":
            out[p[len(prefix) :]] = info
    return out


def irregular_files(fs: AbstractFileSystem, root: str) -> list[tuple[str, str]]:
    """``(path, problem)`` of every entry below the local ``root`` that is not read as a model
    file (see file_kind_problem); object stores hold only objects, so there it is empty."""
    if not is_local(fs):
        return []
    out = []
    for p, info in fs.find(root, detail=True).items():
        if info.get("type") == "other":
            problem = file_kind_problem(p, root)
            if problem:
                out.append((p, problem))
    return sorted(out)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def file_kind_problem(path: str, root: str | None = None) -> str | None:
    """Why the local ``path`` must not be read as a model file, or None.

    Only regular files are read. A symlink is followed when it leads to a regular file and
    (given ``root``) stays inside ``root``; a missing path is left to the caller's read.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        target = os.path.realpath(path)
        if root is not None:
            inside = os.path.realpath(root)
            if os.path.commonpath([target, inside]) != inside:
                return f"a symlink leading out of the model directory (to {target}); refusing to follow it"
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return f"a symlink to {target}, which does not exist"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = _kind(info.st_mode)
    return f"is {kind}, not a regular file" if kind.startswith("a ") else kind


_CHANGE_KEYS = ("crc32c", "ETag", "etag", "generation", "mtime", "updated", "LastModified")


def _listing_key(infos: Mapping[str, Mapping[str, Any]]) -> frozenset[tuple[str, int, str]]:
    def changed(info: Mapping[str, Any]) -> str:
        return next((str(info[k]) for k in _CHANGE_KEYS if info.get(k) is not None), "")

    return frozenset((name, int(info.get("size") or 0), changed(info)) for name, info in infos.items())


class Listing:
    """A recursive listing of a path: ``infos`` (``{path: fsspec info}`` of every file) and what
    two listings are compared by, each file's name, size and checksum (or generation, ETag,
    mtime). Readers of the listed path may take their file sizes from it instead of listing again."""

    __slots__ = ("infos", "key")

    def __init__(self, infos: Mapping[str, Mapping[str, Any]]) -> None:
        self.infos = infos
        self.key = _listing_key(infos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Listing) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __len__(self) -> int:
        return len(self.key)


def find_fresh(fs: AbstractFileSystem, path: str) -> dict[str, dict[str, Any]]:
    """A recursive listing of ``path`` from the store (not its listings cache), ``{path:
    info}`` of every file; empty when nothing is there."""
    fs.invalidate_cache(path)
    try:
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        return {}
    return found if isinstance(found, dict) else {}


async def alisting(fs: AbstractFileSystem, path: str) -> Listing:
    """Every file under ``path`` (an empty listing when nothing is there), listed afresh.

    On async filesystems (gcsfs, s3fs) the listing runs as their native coroutine on their own
    event loop and the caller only awaits it, so a triggerer's loop never blocks and no thread
    is used; other filesystems list in a worker thread.
    """
    loop = getattr(fs, "loop", None) if getattr(fs, "async_impl", False) else None
    if loop is None or getattr(fs, "asynchronous", False):
        return Listing(await asyncio.to_thread(find_fresh, fs, path))
    fs.invalidate_cache(path)
    try:
        found = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fs._find(path, detail=True), loop))
    except FileNotFoundError:
        return Listing({})
    return Listing(found if isinstance(found, dict) else {})


def children(fs: AbstractFileSystem, path: str, refresh: bool = False) -> list[tuple[str, str]]:
    """``(name, type)`` of the entries directly under ``path`` (empty when it does not exist)."""
    if refresh:
        fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    out = []
    for info in entries:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if name:
            out.append((name, info.get("type", "file")))
    return out


def fresh_info(fs: AbstractFileSystem, path: str) -> dict[str, Any]:
    """``fs.info(path)`` from the store, not from its listings cache. A listing of the directory
    taken in this process before ``path`` was written (a sensor's poll, another copy) would
    otherwise answer "no such file", or with an older object's size and checksum (gcsfs looks in
    a cached parent listing first). Asked twice, should a listing refill the cache in between."""
    for attempt in range(2):
        fs.invalidate_cache(path)
        try:
            return dict(fs.info(path))
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")
