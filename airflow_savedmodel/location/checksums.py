"""crc32c of buffers, local files and remote objects, and the local copy that reads both
sides back for theirs (optionally hashing them for a signature as they pass)."""

from __future__ import annotations

import base64
import os
import posixpath
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from awscrt import checksums as _checksums
from fsspec import AbstractFileSystem

from airflow_savedmodel.location.files import CHUNK, LOCAL_CHUNK
from airflow_savedmodel.location.places import is_local


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Extend ``crc`` (0 to start) over ``data``: any buffer, read in place (no copy), with the
    GIL released on large blocks so other threads read and check meanwhile. (awscrt's
    hardware crc32c: about twice google_crc32c's speed, which also copies all but ``bytes``.)"""
    return int(_checksums.crc32c(data, crc))


def fd_crc32c(
    fd: int,
    start: int = 0,
    end: int | None = None,
    crc: int = 0,
    buffer: memoryview | None = None,
    *,
    also: Any = None,
) -> tuple[int, int]:
    """``(crc32c, offset reached)`` of an open local file from ``start`` to ``end`` (or its end),
    extending ``crc``; read into one reused buffer (1 MB unless given): small blocks stay in the
    CPU cache, where large fresh ones cost page faults. ``also`` (a hashlib object) is updated
    with the same bytes."""
    buffer = memoryview(bytearray(LOCAL_CHUNK)) if buffer is None else buffer
    size = len(buffer)
    pos = start
    while end is None or pos < end:
        n = os.preadv(fd, [buffer if end is None else buffer[: min(size, end - pos)]], pos)
        if not n:
            break
        crc = crc32c(buffer[:n], crc)
        if also is not None:
            also.update(buffer[:n])
        pos += n
    return crc, pos


class CheckedCopy(NamedTuple):
    """A local copy's outcome: each side's crc32c and size as read back, and bytes copied."""

    src_crc: int
    src_size: int
    dst_crc: int
    dst_size: int
    copied: int


# Files at least this big have their checksums read back while the kernel copies (two cores
# instead of one after the other); smaller ones are not worth a thread hand-off.
_OVERLAP_BYTES = 4 << 20


_checkers: dict[int, ThreadPoolExecutor] = {}


_checkers_lock = threading.Lock()


def _checker() -> ThreadPoolExecutor:
    """Two read-back threads for this process (keyed by pid: a forked task gets its own, as a
    pool inherited through fork has no threads to run what is submitted)."""
    with _checkers_lock:
        pool = _checkers.get(os.getpid())
        if pool is None:
            pool = _checkers[os.getpid()] = ThreadPoolExecutor(2, thread_name_prefix="crc-readback")
        return pool


def copy_local_checked(src: str, dst: str, advance: Callable[[int], None], digest: Any = None) -> CheckedCopy:
    """Copy local file ``src`` to ``dst`` in the kernel (copy_file_range: no bytes through Python,
    reflinks where the filesystem has them), reading both back for their crc32c (and, given a
    hashlib ``digest``, hashing the destination's bytes as they are read back). On big files
    the read-back follows the copy on another thread, a few MB behind it."""
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            return _copy_fds(src_fd, dst_fd, advance, digest)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _copy_fds(src_fd: int, dst_fd: int, advance: Callable[[int], None], digest: Any = None) -> CheckedCopy:
    size = os.fstat(src_fd).st_size
    copied_to: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    # A big file's digest is taken from the source on a thread of its own, beside the copy and
    # the read-back (SHA-256 costs several times a crc32c); the read-back proves the copy equal.
    hashing = (
        _digester().submit(_fd_digest, src_fd, digest)
        if digest is not None and size >= _OVERLAP_BYTES
        else None
    )
    inline = digest if hashing is None else None

    def read_back() -> tuple[int, int, int, int]:
        src_crc = dst_crc = pos = 0
        while (upto := copied_to.get()) is not None:
            src_crc, _ = fd_crc32c(src_fd, pos, upto, src_crc)
            dst_crc, pos = fd_crc32c(dst_fd, pos, upto, dst_crc, also=inline)
        src_crc, src_end = fd_crc32c(src_fd, pos, None, src_crc)
        dst_crc, dst_end = fd_crc32c(dst_fd, pos, None, dst_crc, also=inline)
        return src_crc, src_end, dst_crc, dst_end

    checking = _checker().submit(read_back) if size >= _OVERLAP_BYTES else None
    done = 0
    try:
        step = 4 << 20 if checking else 1 << 30
        try:
            while done < size:
                n = os.copy_file_range(src_fd, dst_fd, min(size - done, step), done, done)
                if n == 0:
                    break
                done += n
                advance(n)
                if checking:
                    copied_to.put(done)
        except OSError:  # no copy_file_range across these filesystems: plain streaming
            while block := os.pread(src_fd, LOCAL_CHUNK, done):
                os.pwrite(dst_fd, block, done)
                done += len(block)
                advance(len(block))
    finally:
        copied_to.put(None)
        try:
            sums = checking.result() if checking else read_back()
        finally:
            if hashing is not None:  # the source's fd must outlive the thread reading it
                hashing.result()
    return CheckedCopy(sums[0], sums[1], sums[2], sums[3], done)


_digesters: dict[int, ThreadPoolExecutor] = {}


def _digester() -> ThreadPoolExecutor:
    """Threads hashing sources beside local copies (per process, as _checker)."""
    with _checkers_lock:
        pool = _digesters.get(os.getpid())
        if pool is None:
            pool = _digesters[os.getpid()] = ThreadPoolExecutor(2, thread_name_prefix="sha256")
        return pool


def _fd_digest(fd: int, digest: Any) -> None:
    """Feed a whole open local file to ``digest`` (a hashlib object), 4 MB at a time."""
    buffer = memoryview(bytearray(4 * LOCAL_CHUNK))
    pos = 0
    while n := os.preadv(fd, [buffer], pos):
        digest.update(buffer[:n])
        pos += n


def file_crc32c(fs: AbstractFileSystem, path: str, chunk: int = CHUNK) -> tuple[int, int]:
    """``(crc32c, size)`` of a file, read in bounded chunks (a local one as fd_crc32c reads it)."""
    if is_local(fs):
        fd = os.open(fs._strip_protocol(path), os.O_RDONLY)
        try:
            return fd_crc32c(fd)
        finally:
            os.close(fd)
    crc = size = 0
    # The file as the store holds it now: a listing cached earlier (by a publish in this process)
    # may carry an old ETag, which s3fs then requires, failing on a file changed since.
    fs.invalidate_cache(posixpath.dirname(path.rstrip("/")))
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


def to_hex(crc: int) -> str:
    return f"{crc:08x}"
