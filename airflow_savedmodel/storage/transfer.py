"""Copy a whole SavedModel between any two fsspec filesystems, verifying every byte.

Files stream in bounded chunks with their crc32c computed on the way, several at a time;
within one object store the server copies them, and between local paths the kernel does. Each copy is checked against the checksum
the destination reports (GCS crc32c) or by reading it back. Variables and assets land first,
fingerprint.pb after them, saved_model.pb last of the model files (then the manifest), so a reader that waits for
saved_model.pb never sees a model without its variables.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import tenacity
from fsspec import AbstractFileSystem

from airflow_savedmodel import location, schemes
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
    fresh_info,
    is_local,
    reported_crc32c,
    to_hex,
)
from airflow_savedmodel.signing.keys import Signer
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage import signed

MAX_BACKOFF_SECONDS = 30.0
_BROKEN_STREAM_AIOHTTP = {
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ServerTimeoutError",
    "ConnectionTimeoutError",
    "SocketTimeoutError",
}
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
        before_last: Callable[[], None] | None = None,
        signer: Signer | None = None,
        signed_as: str | None = None,
    ) -> tuple[manifests.Manifest, bool]:
        """:func:`copy_tree` with these options."""
        return copy_tree(
            src_fs,
            src,
            dst_fs,
            dst,
            replaced=replaced,
            before_last=before_last,
            signer=signer,
            signed_as=signed_as,
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


def superseded(replaced: Mapping[str, bytes]) -> set[str]:
    """Source files not carried over beside ``replaced``: those files themselves, the source's
    signature (it does not cover new content), and when a rewrite replaces the proto, every
    variant of it (a .pbtxt beside a new .pb) and fingerprint.pb."""
    if not replaced:
        return set()
    protos = set(PROTO_FILES) if PROTO_FILES & replaced.keys() else set()
    return set(replaced) | protos | {manifests.SIGNATURE_PATH}


def worth_recopying(exc: BaseException) -> bool:
    """Whether a whole file is worth copying again: its bytes arrived wrong (checksum) or its
    stream broke (connection reset or dropped, timeout, truncated body). HTTP error statuses are
    not: gcsfs and s3fs (botocore) already retried the request with their own backoff."""
    if isinstance(exc, ChecksumError):
        return True
    if isinstance(exc, SavedModelError):
        return False
    if isinstance(getattr(exc, "code", None) or getattr(exc, "status", None), int):
        return False
    if type(exc).__module__.startswith("aiohttp"):
        return type(exc).__name__ in _BROKEN_STREAM_AIOHTTP
    return isinstance(exc, ConnectionError | TimeoutError | http.client.IncompleteRead)


def _missing_bucket(fs: AbstractFileSystem, path: str) -> str | None:
    """The bucket of ``path`` on an object store when it does not exist (a write there fails
    as if the file vanished), else None."""
    if not schemes.of_fs(fs).object_store:
        return None
    bucket = path.lstrip("/").split("/", 1)[0]
    try:
        exists = fs.exists(bucket)
    except Exception:  # the question failed too: say what we know
        return None
    return None if exists else f"{location.protocol(fs)}://{bucket}"


def _order(files: dict[str, int]) -> tuple[list[str], list[str]]:
    """(bulk files, biggest first) and (files that must land last, in order)."""
    last = [n for n in (FINGERPRINT_PB, SAVED_MODEL_PBTXT, SAVED_MODEL_PB) if n in files]
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
        digest: bool = False,
        shard_size: int | None = None,
    ) -> None:
        self.src_fs, self.dst_fs = src_fs, dst_fs
        # SHA-256 of every file written (of each ``shard_size`` range of it, if given), from the
        # bytes on their way (a signature needs them): {dst path: [(start, end, hex digest)]}.
        self.digest = digest
        self.shard_size = shard_size
        self.sha256: dict[str, list[tuple[int, int, str]]] = {}
        self.chunk_size, self.retries, self.backoff = chunk_size, retries, backoff
        self.callback = progress
        self.server_side = src_fs is dst_fs and schemes.of_fs(src_fs).server_side_copy
        self.want_md5 = schemes.of_fs(dst_fs).md5_etag
        # Object stores whose listings carry each object's checksum: bulk files are verified
        # from one listing after they are all written (verify_listed).
        self.listing_verifies = schemes.of_fs(dst_fs).listing_checksums
        self.deferring = threading.local()
        self.pending: dict[str, tuple[int, int, str | None]] = {}
        self.local = is_local(src_fs) and is_local(dst_fs)
        self.lock = threading.Lock()
        self.done = 0
        self.files_done = 0
        self.total = total
        self.files_total = files_total

    def _advance(self, nbytes: int, file_done: bool = False, sent: list[int] | None = None) -> None:
        with self.lock:
            self.done += nbytes
            self.files_done += int(file_done)
            snapshot = Progress(self.done, self.total, self.files_done, self.files_total)
            if sent is not None:
                sent[0] += nbytes
        if self.callback is not None:
            self.callback(snapshot)

    def _again(self, attempt: Callable[[list[int]], manifests.FileEntry]) -> manifests.FileEntry:
        """Run ``attempt`` until it succeeds, again only after a checksum mismatch or a broken
        stream (with jittered backoff); progress an attempt reported is taken back if it fails."""

        def once() -> manifests.FileEntry:
            sent = [0]
            try:
                return attempt(sent)
            except BaseException:
                with self.lock:
                    self.done -= sent[0]
                raise

        for retrying in tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_random_exponential(multiplier=self.backoff, max=MAX_BACKOFF_SECONDS),
            retry=tenacity.retry_if_exception(worth_recopying),
            reraise=True,
        ):
            with retrying:
                return once()
        raise AssertionError("unreachable")  # pragma: no cover

    def copy(
        self, src: str, dst: str, size: int | None = None, listed: dict[str, Any] | None = None
    ) -> manifests.FileEntry:
        """Copy one file; return its manifest entry (path filled in by the caller). ``size``
        (from the listing) lets a small file go up in one request instead of a resumable upload."""

        small = size is not None and size <= self.chunk_size

        def attempt(sent: list[int]) -> manifests.FileEntry:
            if self.server_side:
                # No byte passes through here: the digest is one streamed read of the source,
                # taken while the server copies (the copy is then checked equal to the source).
                hashing = (
                    _hashers().submit(_sha256_of, self.src_fs, src, self.chunk_size, self._digests())
                    if self.digest
                    else None
                )
                crc, copied = self._server_side(src, dst, listed)
                if hashing is not None:
                    self._record(dst, hashing.result())
                self._advance(copied, file_done=True, sent=sent)
                return manifests.FileEntry("", copied, to_hex(crc))
            if self.local:
                crc, copied = self._kernel_copy(src, dst, sent)
            else:
                whole = self._small(src, dst, sent) if small else None
                crc, copied = whole if whole is not None else self._stream(src, dst, sent)
            self._advance(0, file_done=True)
            return manifests.FileEntry("", copied, to_hex(crc))

        try:
            return self._again(attempt)
        except SavedModelError:
            raise
        except FileNotFoundError as exc:
            if self.src_fs.exists(src):
                bucket = _missing_bucket(self.dst_fs, dst)
                if bucket is not None:
                    raise StorageError(
                        f"bucket {bucket} does not exist", location.url_of(self.dst_fs, dst)
                    ) from exc
                raise StorageError("destination disappeared during the copy", dst) from exc
            raise MissingFileError("source file disappeared during the copy", src) from exc
        except Exception as exc:
            raise StorageError(f"copying to {dst} failed: {type(exc).__name__}: {exc}", src) from exc

    def write(self, data: bytes, dst: str) -> manifests.FileEntry:
        """Write new bytes (a rewrite's proto) to ``dst`` and verify them like a copied file."""

        def attempt(sent: list[int]) -> manifests.FileEntry:
            crc = crc32c(data)
            if self.digest:
                self._record(dst, self._digests_of(data))
            self.dst_fs.pipe_file(dst, data)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if self.want_md5 else None
            self._verify(dst, crc, len(data), md5)
            self._advance(len(data), file_done=True, sent=sent)
            return manifests.FileEntry("", len(data), to_hex(crc))

        try:
            return self._again(attempt)
        except SavedModelError:
            raise
        except Exception as exc:
            raise StorageError(f"writing failed: {type(exc).__name__}: {exc}", dst) from exc

    def _small(self, src: str, dst: str, sent: list[int]) -> tuple[int, int] | None:
        """A file up to one chunk: read whole and written with one request (GCS: a single
        upload instead of starting a resumable one and sending to it: one round trip, not
        two); None when it has grown past a chunk since it was listed."""
        with self.src_fs.open(src, "rb") as reader:
            data = reader.read(self.chunk_size + 1)
        if len(data) > self.chunk_size:
            return None
        crc = crc32c(data)
        if self.digest:
            self._record(dst, self._digests_of(data))
        self.dst_fs.pipe_file(dst, data)
        self._advance(len(data), sent=sent)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if self.want_md5 else None
        self._verify(dst, crc, len(data), md5)
        return crc, len(data)

    def _stream(self, src: str, dst: str, sent: list[int]) -> tuple[int, int]:
        crc = size = 0
        md5 = hashlib.md5(usedforsecurity=False) if self.want_md5 else None
        sha = self._digests() if self.digest else None
        with self.src_fs.open(src, "rb") as reader, self.dst_fs.open(dst, "wb") as writer:
            while block := reader.read(self.chunk_size):
                writer.write(block)
                crc = crc32c(block, crc)
                if md5 is not None:
                    md5.update(block)
                if sha is not None:
                    sha.update(block)
                size += len(block)
                self._advance(len(block), sent=sent)
        if sha is not None:
            self._record(dst, sha.result())
        self._verify(dst, crc, size, md5.hexdigest() if md5 else None)
        return crc, size

    def _kernel_copy(self, src: str, dst: str, sent: list[int]) -> tuple[int, int]:
        """Local to local: the kernel copies, and both files are read back for their crc32c."""
        sha = self._digests() if self.digest else None
        result = location.copy_local_checked(
            self.src_fs._strip_protocol(src),
            self.dst_fs._strip_protocol(dst),
            lambda n: self._advance(n, sent=sent),
            digest=sha,
        )
        if (result.dst_crc, result.dst_size) != (result.src_crc, result.src_size) or (
            result.dst_size != result.copied
        ):
            raise ChecksumError("destination content differs from the source after the copy", dst)
        if sha is not None:
            self._record(dst, sha.result())
        return result.src_crc, result.copied

    def _digests(self) -> location.RangeDigests:
        return location.RangeDigests(hashlib.sha256, self.shard_size)

    def _digests_of(self, data: bytes) -> list[tuple[int, int, str]]:
        digests = self._digests()
        digests.update(data)
        return digests.result()

    def _record(self, dst: str, digests: list[tuple[int, int, str]]) -> None:
        with self.lock:
            self.sha256[dst] = digests

    def _verify(self, dst: str, crc: int, size: int, md5: str | None) -> None:
        """Check what landed at ``dst``: now, or (bulk files on an object store whose listing
        reports checksums) later, all together from one listing (see verify_listed)."""
        if self.listing_verifies and getattr(self.deferring, "on", False):
            with self.lock:
                self.pending[dst] = (crc, size, md5)
            return
        self._check(dst, fresh_info(self.dst_fs, dst), crc, size, md5)

    def verify_listed(self, root: str, sources: dict[str, str]) -> None:
        """Check every deferred file against one recursive listing of ``root`` (GCS lists each
        object's crc32c, S3 its ETag), instead of one metadata request per file; a file that
        does not match is copied again, verified on its own. ``sources``: dst path -> src path."""
        with self.lock:
            pending, self.pending = self.pending, {}
        self.deferring.on = False  # what is copied again below is checked on its own
        if not pending:
            return
        self.dst_fs.invalidate_cache(root)
        listed = self.dst_fs.find(root, detail=True)
        for dst, (crc, size, md5) in sorted(pending.items()):
            try:
                self._check(dst, listed.get(dst) or fresh_info(self.dst_fs, dst), crc, size, md5)
            except ChecksumError:
                self.copy(sources[dst], dst, size)

    def _check(self, dst: str, info: dict[str, Any], crc: int, size: int, md5: str | None) -> None:
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

    def _server_side(self, src: str, dst: str, listed: dict[str, Any] | None = None) -> tuple[int, int]:
        """The server copies; its crc32c of the copy must equal the source's (from the listing
        the copy was planned from, when it has one)."""
        fs = self.dst_fs
        src_info = listed if listed is not None and reported_crc32c(listed) is not None else fs.info(src)
        fs.copy(src, dst)
        size = int(src_info.get("size") or 0)
        src_crc = reported_crc32c(src_info)
        if src_crc is not None and self.listing_verifies and getattr(self.deferring, "on", False):
            with self.lock:
                self.pending[dst] = (src_crc, size, None)
            return src_crc, size
        dst_info = fresh_info(fs, dst)
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


_HASHERS: dict[int, ThreadPoolExecutor] = {}


def _hashers() -> ThreadPoolExecutor:
    """Threads that read sources for their SHA-256 beside server-side copies (one pool per
    process: a pool is not carried across a fork)."""
    pool = _HASHERS.get(os.getpid())
    if pool is None:
        pool = _HASHERS[os.getpid()] = ThreadPoolExecutor(8, thread_name_prefix="sha256-read")
    return pool


def _sha256_of(
    fs: AbstractFileSystem, path: str, chunk: int, digests: location.RangeDigests
) -> list[tuple[int, int, str]]:
    with fs.open(path, "rb") as reader:
        while block := reader.read(chunk):
            digests.update(block)
    return digests.result()


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
    before_last: Callable[[], None] | None = None,
    signer: Signer | None = None,
    signed_as: str | None = None,
) -> tuple[manifests.Manifest, bool]:
    """Copy the model at ``src`` into ``dst`` (which should be empty) and write its manifest there last.

    With a ``signer``, every file's SHA-256 is taken from the bytes as they pass (one streamed
    read of the copy where the server copies) and the copy is signed (``model.sig``, replacing
    any the source had; its subject named ``signed_as``) after saved_model.pb and before the manifest.

    ``replaced`` gives content for some files from memory (a rewrite's saved_model.pb and
    fingerprint.pb, added warmup requests): they are written instead of copied (see superseded).
    ``before_last`` runs after the bulk is copied and verified, before fingerprint.pb and
    saved_model.pb land (what makes a version loadable); raising there stops the copy.
    """
    if not has_saved_model(src_fs, src):
        raise missing_model_error(src_fs, src)
    replaced = dict(replaced or {})
    infos = location.relative_infos(src_fs, src)
    sizes = {rel: int(info.get("size") or 0) for rel, info in infos.items()}
    if replaced:
        sizes = {rel: n for rel, n in sizes.items() if rel not in superseded(replaced)}
        sizes.update({rel: len(data) for rel, data in replaced.items()})
    if signer is not None:
        sizes.pop(signed.SIGNATURE_PATH, None)  # the copy gets a signature of its own
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
        digest=signer is not None,
        shard_size=signer.shard_size if signer is not None else None,
    )
    for directory in sorted({p.rpartition("/")[0] for p in bulk + last if "/" in p}):
        location.makedirs(dst_fs, location.join(dst, directory))
    if (is_local(dst_fs) or not bulk) and not any("/" in p for p in bulk + last):
        location.makedirs(dst_fs, dst)
    entries: dict[str, manifests.FileEntry] = {}

    def one(rel: str, defer: bool = False) -> None:
        copier.deferring.on = defer and rel not in replaced  # new bytes are checked as written
        if rel in replaced:
            entry = copier.write(replaced[rel], location.join(dst, rel))
        else:
            entry = copier.copy(location.join(src, rel), location.join(dst, rel), sizes[rel], infos.get(rel))
        entries[rel] = manifests.FileEntry(rel, entry.size, entry.crc32c)

    if concurrency <= 1 or len(bulk) <= 2:  # threads cost more than they give for a file or two
        for rel in bulk:
            one(rel, True)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(one, rel, True) for rel in bulk]:
                future.result()
    copier.verify_listed(dst, {location.join(dst, rel): location.join(src, rel) for rel in bulk})
    if before_last is not None:
        before_last()
    for rel in last:
        one(rel)
    if signer is not None:
        digests = signed.resources(
            {rel: copier.sha256[location.join(dst, rel)] for rel in entries}, signer.shard_size
        )
        subject = signed_as or location.Location(dst_fs, dst).name
        bundle = signer.sign(
            signed.statement_for(
                location.Location(dst_fs, dst), digests, subject, shard_size=signer.shard_size
            )
        )
        replaced[signed.SIGNATURE_PATH] = bundle
        one(signed.SIGNATURE_PATH)
    manifest = manifests.Manifest(
        files=[entries[p] for p in sorted(entries)],
        source=source_url,
        fingerprint=manifests.fingerprint_of(dst_fs, dst),
    )
    manifests.write(dst_fs, dst, manifest)
    return manifest, copier.server_side


def copy(
    src_url: str | location.Location,
    dst_url: str | location.Location,
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
    overlap = location.overlap(src_fs, src, dst_fs, dst)
    if overlap:
        raise StorageError(f"{overlap}: a copy never writes into its source", dst_display)
    existing = dst_fs.exists(dst) and bool(dst_fs.ls(dst)) if dst_fs.exists(dst) else False
    if existing and not overwrite:
        raise StorageError(
            "destination exists and is not empty (replace it with --overwrite, overwrite=True)", dst_display
        )
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
