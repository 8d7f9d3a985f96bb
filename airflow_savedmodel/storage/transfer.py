"""Copy a whole SavedModel between any two fsspec filesystems, verifying every byte.

Files stream in bounded chunks with their crc32c computed on the way, several at a time;
within one object store the server copies them, and between local paths the kernel does. Each copy is checked against the checksum
the destination reports (GCS crc32c) or by reading it back. Variables and assets land first,
saved_model.pb after them, fingerprint.pb and the manifest last, so a reader that waits for
saved_model.pb never sees a model without its variables.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import ChecksumError, MissingFileError, SavedModelError, StorageError
from airflow_savedmodel.format.crc import crc32c
from airflow_savedmodel.format.model import (
    FINGERPRINT_PB,
    PROTO_FILES,
    SAVED_MODEL_PB,
    SAVED_MODEL_PBTXT,
    has_saved_model,
    missing_model_error,
)
from airflow_savedmodel.location import (
    CHUNK,
    file_crc32c,
    is_local,
    protocol,
    reported_crc32c,
    to_hex,
)
from airflow_savedmodel.storage import manifest as manifests

SERVER_SIDE_PROTOCOLS = {"gs", "gcs", "s3", "s3a", "memory"}
TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Progress:
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class CopyOptions:
    """How files are moved: parallelism, chunking, whole-file retries and progress reports."""

    concurrency: int = 8
    chunk_size: int = CHUNK
    retries: int = 3
    backoff: float = 0.5
    progress: ProgressCallback | None = None

    def tree(
        self,
        src_fs: AbstractFileSystem,
        src: str,
        dst_fs: AbstractFileSystem,
        dst: str,
        source_url: str,
        *,
        replaced: Mapping[str, bytes] | None = None,
    ) -> tuple[manifests.Manifest, bool]:
        """:func:`copy_tree` with these options."""
        return copy_tree(
            src_fs,
            src,
            dst_fs,
            dst,
            replaced=replaced,
            concurrency=self.concurrency,
            chunk_size=self.chunk_size,
            retries=self.retries,
            backoff=self.backoff,
            progress=self.progress,
            source_url=source_url,
        )


@dataclass
class CopyResult:
    src: str
    dst: str
    files: int
    bytes: int
    seconds: float
    server_side: bool
    manifest: manifests.Manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "server_side": self.server_side,
            "fingerprint": self.manifest.fingerprint,
        }


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could help: network and server errors yes; missing files, permissions and bugs no.

    gcsfs's own errors are classified by gcsfs (the same rule its request retries use); a 403,
    which gcsfs raises as a plain ``OSError("Forbidden: ...")``, is permanent.
    """
    if isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError
    ):
        return False
    if isinstance(exc, ChecksumError):
        return True
    if isinstance(exc, SavedModelError):
        return False
    if type(exc).__module__.startswith("gcsfs"):
        from gcsfs.retry import is_retriable

        return bool(is_retriable(exc))
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    if isinstance(code, int):
        return code in TRANSIENT_HTTP
    if type(exc) is OSError and str(exc).startswith(("Forbidden", "Bad Request")):
        return False
    return isinstance(exc, OSError | TimeoutError | ConnectionError) or type(exc).__module__.startswith(
        ("aiohttp", "requests")
    )


def _order(files: dict[str, int]) -> tuple[list[str], list[str]]:
    """(bulk files, biggest first) and (files that must land last, in order)."""
    last = [n for n in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT, FINGERPRINT_PB) if n in files]
    bulk = sorted(
        (p for p in files if p not in last and p != manifests.MANIFEST_PATH), key=lambda p: -files[p]
    )
    return bulk, last


class _Copier:
    def __init__(
        self,
        src_fs: AbstractFileSystem,
        dst_fs: AbstractFileSystem,
        *,
        chunk_size: int,
        retries: int,
        backoff: float,
        progress: ProgressCallback | None,
        total: int,
        files_total: int,
    ) -> None:
        self.src_fs, self.dst_fs = src_fs, dst_fs
        self.chunk_size, self.retries, self.backoff = chunk_size, retries, backoff
        self.callback = progress
        self.server_side = src_fs is dst_fs and protocol(src_fs) in SERVER_SIDE_PROTOCOLS
        self.want_md5 = protocol(dst_fs) in ("s3", "s3a")
        self.local = is_local(src_fs) and is_local(dst_fs)
        self.lock = threading.Lock()
        self.done = 0
        self.files_done = 0
        self.total = total
        self.files_total = files_total

    def _advance(self, nbytes: int, file_done: bool = False) -> None:
        with self.lock:
            self.done += nbytes
            self.files_done += int(file_done)
            snapshot = Progress(self.done, self.total, self.files_done, self.files_total)
        if self.callback is not None:
            self.callback(snapshot)

    def copy(self, src: str, dst: str) -> manifests.FileEntry:
        """Copy one file with retries; return its manifest entry (path filled in by the caller)."""
        attempt = 0
        while True:
            counted = 0
            try:
                if self.server_side:
                    crc, size = self._server_side(src, dst)
                elif self.local:
                    crc, size, counted = self._kernel_copy(src, dst)
                else:
                    crc, size, counted = self._stream(src, dst)
                self._advance(size - counted, file_done=True)
                return manifests.FileEntry("", size, to_hex(crc))
            except BaseException as exc:
                with self.lock:
                    self.done -= counted
                attempt += 1
                if attempt > self.retries or not is_transient(exc):
                    if isinstance(exc, SavedModelError):
                        raise
                    if isinstance(exc, FileNotFoundError):
                        if self.src_fs.exists(src):
                            raise StorageError("destination disappeared during the copy", dst) from exc
                        raise MissingFileError("source file disappeared during the copy", src) from exc
                    if isinstance(exc, Exception):
                        raise StorageError(
                            f"copying to {dst} failed: {type(exc).__name__}: {exc}", src
                        ) from exc
                    raise
                time.sleep(self.backoff * 2 ** (attempt - 1))

    def write(self, data: bytes, dst: str) -> manifests.FileEntry:
        """Write new bytes (a rewrite's proto) to ``dst`` and verify them like a copied file."""
        attempt = 0
        while True:
            try:
                crc = crc32c(data)
                self.dst_fs.pipe_file(dst, data)
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if self.want_md5 else None
                self._verify(dst, crc, len(data), md5)
                self._advance(len(data), file_done=True)
                return manifests.FileEntry("", len(data), to_hex(crc))
            except Exception as exc:
                attempt += 1
                if attempt > self.retries or not is_transient(exc):
                    if isinstance(exc, SavedModelError):
                        raise
                    raise StorageError(f"writing failed: {type(exc).__name__}: {exc}", dst) from exc
                time.sleep(self.backoff * 2 ** (attempt - 1))

    def _stream(self, src: str, dst: str) -> tuple[int, int, int]:
        crc = size = 0
        md5 = hashlib.md5(usedforsecurity=False) if self.want_md5 else None
        with self.src_fs.open(src, "rb") as reader, self.dst_fs.open(dst, "wb") as writer:
            while block := reader.read(self.chunk_size):
                writer.write(block)
                crc = crc32c(block, crc)
                if md5 is not None:
                    md5.update(block)
                size += len(block)
                self._advance(len(block))
        self._verify(dst, crc, size, md5.hexdigest() if md5 else None)
        return crc, size, size

    def _kernel_copy(self, src: str, dst: str) -> tuple[int, int, int]:
        """Local to local: let the kernel copy (copy_file_range, reflinks where the filesystem
        has them), then compare checksums of both files read back."""
        done = 0
        with self.src_fs.open(src, "rb") as reader, self.dst_fs.open(dst, "wb") as writer:
            size = os.fstat(reader.fileno()).st_size
            try:
                while done < size:
                    n = os.copy_file_range(reader.fileno(), writer.fileno(), min(size - done, 1 << 30))
                    if n == 0:
                        break
                    done += n
                    self._advance(n)
            except OSError:  # no copy_file_range across these filesystems: plain streaming
                reader.seek(done)
                writer.seek(done)
                while block := reader.read(self.chunk_size):
                    writer.write(block)
                    done += len(block)
                    self._advance(len(block))
        crc, read = file_crc32c(self.src_fs, src, self.chunk_size)
        copied, written = file_crc32c(self.dst_fs, dst, self.chunk_size)
        if (copied, written) != (crc, read) or written != done:
            raise ChecksumError("destination content differs from the source after the copy", dst)
        return crc, done, done

    def _verify(self, dst: str, crc: int, size: int, md5: str | None) -> None:
        info = self.dst_fs.info(dst)
        if int(info.get("size") or 0) != size:
            raise ChecksumError(f"destination has {info.get('size')} bytes, {size} were written", dst)
        reported = reported_crc32c(info)
        if reported is not None:
            if reported != crc:
                raise ChecksumError("destination crc32c differs from the bytes sent", dst)
            return
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if md5 is not None and etag and "-" not in etag:
            if etag != md5:
                raise ChecksumError("destination ETag differs from the MD5 of the bytes sent", dst)
            return
        actual, _ = file_crc32c(self.dst_fs, dst, self.chunk_size)
        if actual != crc:
            raise ChecksumError("destination content differs from the bytes sent (re-read)", dst)

    def _server_side(self, src: str, dst: str) -> tuple[int, int]:
        fs = self.dst_fs
        src_info = fs.info(src)
        fs.copy(src, dst)
        dst_info = fs.info(dst)
        size = int(src_info.get("size") or 0)
        if int(dst_info.get("size") or 0) != size:
            raise ChecksumError(f"server-side copy has {dst_info.get('size')} bytes, source {size}", dst)
        src_crc, dst_crc = reported_crc32c(src_info), reported_crc32c(dst_info)
        if src_crc is not None and dst_crc is not None:
            if src_crc != dst_crc:
                raise ChecksumError("server-side copy crc32c differs from the source's", dst)
            return dst_crc, size
        crc, _ = file_crc32c(fs, dst, self.chunk_size)
        expected, _ = file_crc32c(fs, src, self.chunk_size)
        if crc != expected:
            raise ChecksumError("server-side copy content differs from the source", dst)
        return crc, size


def copy_tree(
    src_fs: AbstractFileSystem,
    src: str,
    dst_fs: AbstractFileSystem,
    dst: str,
    *,
    concurrency: int = 8,
    chunk_size: int = CHUNK,
    retries: int = 3,
    backoff: float = 0.5,
    progress: ProgressCallback | None = None,
    source_url: str = "",
    replaced: Mapping[str, bytes] | None = None,
) -> tuple[manifests.Manifest, bool]:
    """Copy the model at ``src`` into ``dst`` (which should be empty) and write its manifest there last.

    ``replaced`` gives new content for some files (a rewrite's saved_model.pb and fingerprint.pb):
    they are written from memory instead of copied, and the source's saved_model.pb, .pbtxt and
    fingerprint.pb are not carried over beside them.
    """
    if not has_saved_model(src_fs, src):
        raise missing_model_error(src_fs, src)
    replaced = dict(replaced or {})
    sizes = location.relative_sizes(src_fs, src)
    if replaced:
        sizes = {rel: n for rel, n in sizes.items() if rel not in PROTO_FILES}
        sizes.update({rel: len(data) for rel, data in replaced.items()})
    bulk, last = _order(sizes)
    copier = _Copier(
        src_fs,
        dst_fs,
        chunk_size=chunk_size,
        retries=retries,
        backoff=backoff,
        progress=progress,
        total=sum(sizes[p] for p in bulk + last),
        files_total=len(bulk) + len(last),
    )
    for directory in sorted({p.rpartition("/")[0] for p in bulk + last if "/" in p}):
        dst_fs.makedirs(location.join(dst, directory), exist_ok=True)
    if is_local(dst_fs) or not bulk:
        dst_fs.makedirs(dst, exist_ok=True)
    entries: dict[str, manifests.FileEntry] = {}

    def one(rel: str) -> None:
        if rel in replaced:
            entry = copier.write(replaced[rel], location.join(dst, rel))
        else:
            entry = copier.copy(location.join(src, rel), location.join(dst, rel))
        entries[rel] = manifests.FileEntry(rel, entry.size, entry.crc32c)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for future in [pool.submit(one, rel) for rel in bulk]:
            future.result()
    for rel in last:
        one(rel)
    manifest = manifests.Manifest(
        files=[entries[p] for p in sorted(entries)],
        source=source_url,
        fingerprint=manifests.fingerprint_of(dst_fs, dst),
    )
    manifests.write(dst_fs, dst, manifest)
    return manifest, copier.server_side


def copy(
    src_url: str,
    dst_url: str,
    *,
    src_options: dict[str, Any] | None = None,
    dst_options: dict[str, Any] | None = None,
    concurrency: int = 8,
    chunk_size: int = CHUNK,
    retries: int = 3,
    backoff: float = 0.5,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    src_fs: AbstractFileSystem | None = None,
    dst_fs: AbstractFileSystem | None = None,
) -> CopyResult:
    """Copy a whole SavedModel; the destination must not exist (or be empty) unless ``overwrite``.

    On failure the destination is left as it was: a new destination is removed, a replaced one
    is only swapped out once the new copy is complete. The source is only ever read.
    """
    src_fs, src = location.resolve(src_url, src_options, src_fs)
    dst_fs, dst = location.resolve(dst_url, dst_options, dst_fs)
    src_display, dst_display = location.url_of(src_fs, src), location.url_of(dst_fs, dst)
    if src_fs is dst_fs and src.rstrip("/") == dst.rstrip("/"):
        raise StorageError("source and destination are the same", dst_display)
    existing = dst_fs.exists(dst) and bool(dst_fs.ls(dst)) if dst_fs.exists(dst) else False
    if existing and not overwrite:
        raise StorageError("destination exists and is not empty (pass overwrite to replace it)", dst_display)
    target = location.sibling(dst, "copy") if existing else dst
    started = time.monotonic()
    try:
        manifest, server_side = copy_tree(
            src_fs,
            src,
            dst_fs,
            target,
            concurrency=concurrency,
            chunk_size=chunk_size,
            retries=retries,
            backoff=backoff,
            progress=progress,
            source_url=src_display,
        )
        if existing:
            location.replace_dir(dst_fs, target, dst)
    except BaseException:
        location.remove_quietly(dst_fs, target)
        raise
    return CopyResult(
        src_display,
        dst_display,
        len(manifest.files),
        manifest.total_bytes,
        time.monotonic() - started,
        server_side,
        manifest,
    )
