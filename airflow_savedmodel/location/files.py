"""Whole-file operations the layers above share: bounded copies, typed reads, atomic writes,
hidden staging siblings and replacing a directory."""

from __future__ import annotations

import os
import posixpath
import time
import uuid

from fsspec import AbstractFileSystem

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.location.listing import file_kind_problem, fresh_info
from airflow_savedmodel.location.places import is_local, url_of

CHUNK = 8 << 20


LOCAL_CHUNK = 1 << 20


def copy_file(
    src_fs: AbstractFileSystem, src: str, dst_fs: AbstractFileSystem, dst: str, chunk: int = CHUNK
) -> int:
    """Copy one file between filesystems in bounded memory; return the bytes copied. Within one
    object store the server copies it (no byte passes through this process)."""
    if src_fs is dst_fs and not is_local(src_fs):
        src_fs.copy(src, dst)
        return int(fresh_info(src_fs, dst).get("size") or 0)
    copied = 0
    with src_fs.open(src, "rb") as reader, dst_fs.open(dst, "wb") as writer:
        while block := reader.read(chunk):
            writer.write(block)
            copied += len(block)
    return copied


def read_file(
    fs: AbstractFileSystem,
    path: str,
    *,
    root: str | None = None,
    limit: int | None = None,
    size: int | None = None,
) -> bytes:
    """The bytes of the model file at ``path``, with typed errors naming it: MissingFileError when
    absent, FormatError for anything but a regular file (see file_kind_problem) or for a file
    larger than ``limit`` bytes (checked before reading; ``size``: its size from a listing the
    caller has just made, else the store is asked)."""
    from airflow_savedmodel.errors import MissingFileError

    where = url_of(fs, path)
    if is_local(fs):
        problem = file_kind_problem(path, root)
        if problem:
            raise FormatError(problem, where)
    try:
        if limit is not None:
            if size is None:
                size = fs.size(path)
            if size is not None and size > limit:
                raise FormatError(f"{size:,} bytes, more than the {limit:,} this file may have", where)
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        raise MissingFileError("does not exist", where) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a regular file", where) from None


def sibling(path: str, kind: str) -> str:
    """A hidden, non-numeric sibling of ``path`` for staging (``.name.kind-<time>-<random>``)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    hidden = f".{name}.{kind}-{int(time.time())}-{uuid.uuid4().hex[:12]}"
    return posixpath.join(parent, hidden) if parent else hidden


def replace_dir(fs: AbstractFileSystem, staging: str, dst: str) -> None:
    """Move a finished staging directory to ``dst``, keeping an old ``dst`` until the move succeeded."""
    if not fs.exists(dst):
        fs.mv(staging, dst, recursive=True)
        return
    old = sibling(dst, "old")
    fs.mv(dst, old, recursive=True)
    try:
        fs.mv(staging, dst, recursive=True)
    except BaseException:
        fs.mv(old, dst, recursive=True)
        raise
    fs.rm(old, recursive=True)


def remove_quietly(fs: AbstractFileSystem, path: str) -> None:
    """Remove ``path`` if it exists, for cleanup paths that must not mask the original error."""
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception:  # cleanup is best effort by design
        return


def write_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Replace the file ``path`` so that readers see the old bytes or the new, never a mix.

    Object stores make a single-object write atomic; on local disks the bytes go to a hidden
    sibling first and ``rename`` puts them in place.
    """
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    tmp = sibling(path, "tmp")
    try:
        fs.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
        try:
            handle = open(tmp, "wb")  # noqa: SIM115
        except FileNotFoundError:  # the directory was removed as empty in between: once more
            fs.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
            handle = open(tmp, "wb")  # noqa: SIM115
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(fs, tmp)
        raise
