"""The filesystem layer under format/ and storage/: where model files live and what is done to them.

A :class:`Location` is one resolved place: an fsspec filesystem, a path on it, and a URL that is
safe to print (no credentials). Everything below the hook passes Locations down; this module
owns turning URLs into them and the file operations the layers above share: listing, staging
names, replacing directories, streamed copies and crc32c checksums.
"""

from __future__ import annotations

import asyncio
import base64
import os
import posixpath
import queue
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import fsspec
from awscrt import checksums as _checksums
from fsspec import AbstractFileSystem

from airflow_savedmodel import schemes
from airflow_savedmodel.errors import FormatError, SavedModelError, StorageError

CHUNK = 8 << 20
LOCAL_CHUNK = 1 << 20
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


# Option keys whose values are credentials (fsspec's gcsfs/s3fs names and the usual others).
SENSITIVE_KEYS = ("secret", "token", "password", "private_key", "keyfile", "credentials", "key")
_USERINFO_ANYWHERE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_SECRET_PARAM = re.compile(
    r"(?<![A-Za-z])((?:access_)?token|secret|password|signature|credential|key)([A-Za-z_-]*=)[^&\s'\"]+",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """``url`` without credentials in its authority (``s3://KEY:SECRET@bucket`` -> ``s3://***@bucket``)."""
    return _USERINFO.sub(r"\1***@", url)


# gcsfs's ``token`` names a way to get credentials as often as it holds one; these are not secrets.
TOKEN_MODES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def secret_values(options: dict[str, Any]) -> list[str]:
    """The values of credential-looking keys in (nested) storage options."""
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            found += secret_values(value)
        elif (
            isinstance(value, str)
            and value
            and any(k in key.lower() for k in SENSITIVE_KEYS)
            and not (key == "token" and value in TOKEN_MODES)
        ):
            found.append(value)
    return found


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message from a filesystem library) with credentials taken out: URL
    userinfo, token/secret/signature query parameters, and each of ``secrets`` verbatim."""
    for value in sorted(set(secrets), key=len, reverse=True):
        if len(value) >= 4:  # shorter ones would mangle ordinary words
            text = text.replace(value, "***")
    text = _USERINFO_ANYWHERE.sub(r"\1***@", text)
    return _SECRET_PARAM.sub(r"\1\2***", text)


def protocol(fs: AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto if isinstance(proto, str) else proto[0]


def is_local(fs: AbstractFileSystem) -> bool:
    return schemes.of_fs(fs).local


def makedirs(fs: AbstractFileSystem, path: str) -> None:
    """Make ``path`` a directory where directories exist; on an object store nothing (keys need
    none, and gcsfs/s3fs would create a missing bucket, so a typo in its name would make one)."""
    if not schemes.of_fs(fs).object_store:
        fs.makedirs(path, exist_ok=True)


def url_of(fs: AbstractFileSystem, path: str) -> str:
    """A printable URL for ``path`` that names its filesystem (plain paths for the local one)."""
    if is_local(fs):
        return path
    return redact(fs.unstrip_protocol(path))


class Location(NamedTuple):
    """A filesystem and a path on it; unpacks as ``fs, path``."""

    fs: AbstractFileSystem
    path: str

    @property
    def url(self) -> str:
        return url_of(self.fs, self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def join(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts))

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path.rstrip("/")) or "/")

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def __repr__(self) -> str:
        return f"Location({self.url!r})"


def resolve(
    url: str | Location, storage_options: dict[str, Any] | None = None, fs: AbstractFileSystem | None = None
) -> Location:
    """The Location of ``url``; a given ``fs`` is used as is with the URL's path."""
    if isinstance(url, Location):
        return url
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if schemes.of(scheme).url_credentials_ignored and _USERINFO.match(url):
        raise SavedModelError(
            "credentials in a gs:// or s3:// URL are not used by the filesystem; pass them as storage "
            "options or through an Airflow connection",
            redact(url),
        )
    if fs is not None:
        return Location(fs, fs._strip_protocol(url).rstrip("/") or "/")
    options = storage_options or {}
    token = options.get("token")
    token_file = isinstance(token, str) and token not in TOKEN_MODES and _looks_like_path(token)
    if schemes.canonical(scheme) == "gs" and token_file and not os.path.exists(str(token)):
        # gcsfs would send the path to Google as if it were an access token
        raise StorageError(f"token file {token} does not exist", redact(url))
    try:
        options_with_timeouts = with_timeouts(scheme, options)
    except ValueError as exc:
        raise SavedModelError(f"cannot open filesystem: {exc}", redact(url)) from None
    try:
        filesystem, path = fsspec.core.url_to_fs(url, **options_with_timeouts)
    except ImportError as exc:
        raise SavedModelError(f"cannot open filesystem: {exc}", redact(url)) from None
    except Exception as exc:  # the storage library's credential parsing: KeyError, JSONDecodeError ...
        if is_storage_failure(exc):  # a request it made on the way (a token checked online)
            raise storage_error(exc, url, secret_values(options)) from None
        what = (
            f"the credentials lack the field {exc}"
            if isinstance(exc, KeyError)
            else f"{type(exc).__name__}: {exc}"
        )
        problem = scrub(what, secret_values(options))
        raise StorageError(f"cannot set up the filesystem from its options: {problem}", redact(url)) from None
    return Location(filesystem, path.rstrip("/") or "/")


# Every request to an object store gets these unless the options say otherwise (``connect_timeout``
# and ``read_timeout``, seconds, in a connection's storage options or ``-o``): gcsfs sets none,
# so a store that accepts connections and never answers would hold a task or a poll forever. The
# read timeout bounds the silence between two reads of one response, not a whole transfer.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0


def with_timeouts(scheme: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for fsspec, with our ``connect_timeout``/``read_timeout`` turned into the
    storage library's own settings (gcsfs: an aiohttp ClientTimeout; s3fs: botocore's config);
    requests that time out are retried by the library like other transient failures."""
    options = dict(options)
    try:
        connect = float(options.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        read = float(options.pop("read_timeout", DEFAULT_READ_TIMEOUT))
    except (TypeError, ValueError):
        raise ValueError("connect_timeout and read_timeout must be numbers of seconds") from None
    if connect <= 0 or read <= 0:
        raise ValueError("connect_timeout and read_timeout must be more than 0 seconds")
    if schemes.of(scheme).timeouts == "aiohttp" and "requests_timeout" not in options:
        import aiohttp

        options["requests_timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
    elif schemes.of(scheme).timeouts == "botocore":
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", connect)
        config.setdefault("read_timeout", read)
        options["config_kwargs"] = config
    return options


def _looks_like_path(value: str) -> bool:
    return value.endswith(".json") or value.startswith(("/", "./", "~"))


def overlap(src_fs: AbstractFileSystem, src: str, dst_fs: AbstractFileSystem, dst: str) -> str:
    """Why ``dst`` and ``src`` share bytes on one store ("the destination is inside the source",
    ...), or "" when they do not. Local paths are compared after resolving links."""
    if protocol(src_fs) != protocol(dst_fs):
        return ""
    if is_local(src_fs):
        a, b = os.path.realpath(src), os.path.realpath(dst)
    else:
        if src_fs is not dst_fs and getattr(src_fs, "storage_options", None) != getattr(
            dst_fs, "storage_options", None
        ):
            return ""  # perhaps two endpoints (two S3-compatible servers); cannot tell
        a, b = src.rstrip("/"), dst.rstrip("/")
    if a == b:
        return "source and destination are the same"
    if b.startswith(a.rstrip("/") + "/"):
        return "the destination is inside the source"
    if a.startswith(b.rstrip("/") + "/"):
        return "the source is inside the destination"
    return ""


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts)


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


# Libraries whose exceptions mean "the storage request failed" (network, auth, the server).
STORAGE_LIBRARIES = ("aiohttp", "aiobotocore", "botocore", "gcsfs", "s3fs", "google", "requests", "urllib3")


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a filesystem library's network, auth or server failure."""
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.split(".")[0] in STORAGE_LIBRARIES


def is_timeout(exc: BaseException) -> bool:
    """A request the store never answered in time (aiohttp's, asyncio's, botocore's timeouts)."""
    return isinstance(exc, TimeoutError) or (
        type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore", "urllib3", "requests")
        and "Timeout" in type(exc).__name__
    )


def storage_error(
    exc: BaseException, where: str, secrets: Iterable[str] = (), waited: float | None = None
) -> SavedModelError:
    """``exc`` as a StorageError naming ``where`` (redacted), on one line, credentials scrubbed;
    a timeout says so, with the seconds waited when known."""
    detail = " ".join(scrub(f"{type(exc).__name__}: {exc}", secrets).split())
    if is_timeout(exc):
        after = f" after {waited:.0f}s" if waited is not None else ""
        return StorageError(
            f"the store did not answer in time{after}, retries included ({detail}); "
            "connect_timeout/read_timeout set the limits",
            redact(where),
        )
    return StorageError(f"storage request failed: {detail}", redact(where))


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


def _find_fresh(fs: AbstractFileSystem, path: str) -> dict[str, dict[str, Any]]:
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
        return Listing(await asyncio.to_thread(_find_fresh, fs, path))
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
