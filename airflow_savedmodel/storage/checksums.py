"""crc32c of files, streamed, and the checksums object stores report for their objects."""

from __future__ import annotations

import base64
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel.format.crc import crc32c

CHUNK = 8 << 20


def file_crc32c(fs: AbstractFileSystem, path: str, chunk: int = CHUNK) -> tuple[int, int]:
    """``(crc32c, size)`` of a file, read in bounded chunks."""
    crc = size = 0
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            crc = crc32c(block, crc)
            size += len(block)
    return crc, size


def reported_crc32c(info: dict[str, Any]) -> int | None:
    """The crc32c an object store reports in ``fs.info()`` (GCS: base64 of the big-endian value)."""
    value = info.get("crc32c") or info.get("ChecksumCRC32C")
    if not value:
        return None
    try:
        return int.from_bytes(base64.b64decode(value), "big")
    except (ValueError, TypeError):
        return None


def protocol(fs: AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto if isinstance(proto, str) else proto[0]


def is_local(fs: AbstractFileSystem) -> bool:
    return protocol(fs) in ("file", "local")


def to_hex(crc: int) -> str:
    return f"{crc:08x}"
