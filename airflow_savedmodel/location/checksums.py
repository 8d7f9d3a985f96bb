"""crc32c of buffers, local files and remote objects, the local copy that reads both sides back
for theirs, and the digests a signature needs (a file's, or one per shard of it) taken from those
read-back bytes as they pass: a file's shards are read back, and hashed, on several cores."""

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
    """Read-back threads for this process, one per core (at least two): reading back is checksum
    and hash work, bound by the CPU; a 4 MB buffer each bounds the memory. Keyed by pid: a forked
    task gets its own, as a pool inherited through fork has no threads to run what is submitted."""
    with _checkers_lock:
        pool = _checkers.get(os.getpid())
        if pool is None:
            workers = max(2, os.cpu_count() or 2)
            pool = _checkers[os.getpid()] = ThreadPoolExecutor(workers, thread_name_prefix="crc-readback")
        return pool


class RangeDigests:
    """The digests a signature records for one file: of the whole file (OMS's ``files``
    serialization, ``shard_size`` None) or of each ``shard_size``-byte range of it (``shards``;
    an empty file has none). Fed in order by :meth:`update` (a stream), or range by range by
    :meth:`put` (ranges read back in parallel)."""

    def __init__(self, new_hash: Callable[[], Any], shard_size: int | None = None) -> None:
        self.new_hash = new_hash
        self.shard_size = shard_size
        self._done: dict[int, tuple[int, str]] = {}  # start -> (end, hex digest)
        self._hash: Any = None
        self._start = self._pos = 0

    def ranges(self, size: int) -> list[tuple[int, int]]:
        if self.shard_size is None:
            return [(0, size)]
        return [(start, min(start + self.shard_size, size)) for start in range(0, size, self.shard_size)]

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._hash is None:
                self._hash, self._start = self.new_hash(), self._pos
            take = view if self.shard_size is None else view[: self.shard_size - (self._pos - self._start)]
            self._hash.update(take)
            self._pos += len(take)
            view = view[len(take) :]
            if self.shard_size is not None and self._pos - self._start == self.shard_size:
                self.put(self._start, self._pos, self._hash.hexdigest())
                self._hash = None

    def put(self, start: int, end: int, hexdigest: str) -> None:
        self._done[start] = (end, hexdigest)

    def result(self) -> list[tuple[int, int, str]]:
        """``[(start, end, hex digest)]`` in order (what :meth:`update` fed, closed here)."""
        if self._hash is not None:
            self.put(self._start, self._pos, self._hash.hexdigest())
            self._hash = None
        elif self.shard_size is None and not self._done:
            self.put(0, 0, self.new_hash().hexdigest())  # an empty file has a digest too
        return [(start, end, digest) for start, (end, digest) in sorted(self._done.items())]


def copy_local_checked(
    src: str, dst: str, advance: Callable[[int], None], digest: RangeDigests | None = None
) -> CheckedCopy:
    """Copy local file ``src`` to ``dst`` in the kernel (copy_file_range: no bytes through Python,
    reflinks where the filesystem has them), reading both back for their crc32c (and, given
    ``digest``, hashing the destination's bytes as they are read back). On big files the
    read-back follows the copy on another thread, a few MB behind it; a file signed in shards
    is read back (and hashed) a shard per thread as soon as the copy has passed it."""
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            return _copy_fds(src_fd, dst_fd, advance, digest)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _copy_fds(
    src_fd: int, dst_fd: int, advance: Callable[[int], None], digest: RangeDigests | None = None
) -> CheckedCopy:
    size = os.fstat(src_fd).st_size
    if digest is not None and len(digest.ranges(size)) > 1:
        return _copy_fds_sharded(src_fd, dst_fd, size, advance, digest)
    copied_to: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    inline = digest  # the destination's bytes, hashed as the read-back reads them

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
        sums = checking.result() if checking else read_back()
    return CheckedCopy(sums[0], sums[1], sums[2], sums[3], done)


def _copy_fds_sharded(
    src_fd: int, dst_fd: int, size: int, advance: Callable[[int], None], digest: RangeDigests
) -> CheckedCopy:
    """The kernel copy of a file signed in shards: each shard, once copied, is read back on a
    thread of its own (both sides' crc32c, the destination's bytes hashed), and the shards'
    checksums are combined into the file's. The last one reads to the end of both files, so a
    file that grew or shrank meanwhile shows in the sizes."""
    ranges = digest.ranges(size)

    def shard(start: int, end: int | None) -> tuple[int, int, int, int, str]:
        buffer = memoryview(bytearray(4 * LOCAL_CHUNK))
        hashed = digest.new_hash()
        src_crc, src_end = fd_crc32c(src_fd, start, end, 0, buffer)
        dst_crc, dst_end = fd_crc32c(dst_fd, start, end, 0, buffer, also=hashed)
        return src_crc, src_end - start, dst_crc, dst_end - start, hashed.hexdigest()

    pending: list[Any] = []
    done = 0

    def submit_upto(copied: int) -> None:
        while len(pending) < len(ranges) and ranges[len(pending)][1] <= copied:
            start, end = ranges[len(pending)]
            pending.append(_checker().submit(shard, start, None if end == size else end))

    try:
        try:
            while done < size:
                n = os.copy_file_range(src_fd, dst_fd, min(size - done, 4 << 20), done, done)
                if n == 0:
                    break
                done += n
                advance(n)
                submit_upto(done)
        except OSError:  # no copy_file_range across these filesystems: plain streaming
            while block := os.pread(src_fd, LOCAL_CHUNK, done):
                os.pwrite(dst_fd, block, done)
                done += len(block)
                advance(len(block))
                submit_upto(done)
    finally:
        submit_upto(size)  # a short copy still reads every shard back, to say what is there
        results = [future.result() for future in pending]
    src_crc = src_size = dst_crc = dst_size = 0
    for (start, end), (s_crc, s_len, d_crc, d_len, hexdigest) in zip(ranges, results, strict=True):
        src_crc, src_size = _checksums.combine_crc32c(src_crc, s_crc, s_len), src_size + s_len
        dst_crc, dst_size = _checksums.combine_crc32c(dst_crc, d_crc, d_len), dst_size + d_len
        digest.put(start, end, hexdigest)
    return CheckedCopy(src_crc, src_size, dst_crc, dst_size, done)


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
