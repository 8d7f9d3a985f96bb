"""A :class:`Location` (an fsspec filesystem, a path on it, a URL safe to print) and turning
URLs and storage options into one, with request timeouts on every object store."""

from __future__ import annotations

import os
import posixpath
from typing import Any, NamedTuple

import fsspec
from fsspec import AbstractFileSystem

from airflow_savedmodel import schemes
from airflow_savedmodel.errors import SavedModelError, StorageError
from airflow_savedmodel.location.failures import is_storage_failure, storage_error
from airflow_savedmodel.location.redaction import TOKEN_MODES, URL_USERINFO, redact, scrub, secret_values


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
    if schemes.of(scheme).url_credentials_ignored and URL_USERINFO.match(url):
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
