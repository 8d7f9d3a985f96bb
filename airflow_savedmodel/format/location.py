"""Turn a URL (local path, file://, memory://, gs://, s3://, ...) into an fsspec filesystem and path."""

from __future__ import annotations

import posixpath
import time
import uuid
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from airflow_savedmodel.errors import SavedModelError


def resolve(
    url: str, storage_options: dict[str, Any] | None = None, fs: AbstractFileSystem | None = None
) -> tuple[AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for ``url``; a given ``fs`` is used as is with the URL's path."""
    if fs is not None:
        return fs, fs._strip_protocol(url).rstrip("/") or "/"
    try:
        filesystem, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise SavedModelError(f"cannot open filesystem: {exc}", url) from None
    return filesystem, path.rstrip("/") or "/"


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts)


def url_of(fs: AbstractFileSystem, path: str) -> str:
    """A URL for ``path`` that names its filesystem (plain paths for the local one)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return fs.unstrip_protocol(path)


CHUNK = 8 << 20


def copy_file(
    src_fs: AbstractFileSystem, src: str, dst_fs: AbstractFileSystem, dst: str, chunk: int = CHUNK
) -> int:
    """Stream one file between filesystems in bounded memory; return the bytes copied."""
    copied = 0
    with src_fs.open(src, "rb") as reader, dst_fs.open(dst, "wb") as writer:
        while block := reader.read(chunk):
            writer.write(block)
            copied += len(block)
    return copied


def relative_files(fs: AbstractFileSystem, root: str) -> list[str]:
    """Every file below ``root`` as a path relative to it, sorted."""
    return sorted(relative_sizes(fs, root))


def relative_sizes(fs: AbstractFileSystem, root: str) -> dict[str, int]:
    """``{relative path: size}`` of every file below ``root`` (empty when it does not exist)."""
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    found = fs.find(root, detail=True)
    return {
        p[len(prefix) :]: int(info.get("size") or 0)
        for p, info in found.items()
        if p.startswith(prefix) and info.get("type", "file") == "file"
    }


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
