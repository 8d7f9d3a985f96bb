"""What each filesystem scheme can do, in one table every module asks.

A scheme's entry says how the provider treats its URLs: whether it is an object store (no
directories, no rename; a version is claimed by a create-if-absent write), whether a copy within
it runs on the server, whether its listings carry checksums a copy can be verified against,
which Airflow connection types give its credentials, its web console's page for a directory,
and its OpenLineage namespace. Adding a backend is one entry here, plus its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fsspec import AbstractFileSystem


@dataclass(frozen=True)
class Scheme:
    """One backend. ``name`` is the canonical scheme (lineage namespaces and links use it)."""

    name: str
    aliases: tuple[str, ...] = ()
    local: bool = False  # POSIX directories: staging and an atomic rename
    object_store: bool = False  # keys, not directories: claims, no empty directories, no rename
    # How a name (a version number, a lock) is claimed: "create" (a create-if-absent write),
    # "generation" (GCS: every claimant writes its own object, the lowest generation wins),
    # "process" (in-memory: a lock of this process).
    claim: str = "create"
    server_side_copy: bool = False  # a copy within one filesystem never passes through the worker
    listing_checksums: bool = False  # a listing reports each object's checksum (verify from it)
    md5_etag: bool = False  # a single-part object's ETag is its MD5 (computed while writing)
    url_credentials_ignored: bool = False  # user:secret@ in a URL is not used by the library
    timeouts: str | None = None  # how connect/read timeouts reach the library: "aiohttp" | "botocore"
    conn_types: tuple[str, ...] = ()  # Airflow connection types whose credentials it takes
    console: str | None = None  # "gcs" | "s3": which web console shows a directory

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


SCHEMES: tuple[Scheme, ...] = (
    Scheme("file", aliases=("local",), local=True),
    Scheme("memory", server_side_copy=True, claim="process"),
    Scheme(
        "gs",
        aliases=("gcs",),
        object_store=True,
        claim="generation",
        server_side_copy=True,
        listing_checksums=True,
        url_credentials_ignored=True,
        timeouts="aiohttp",
        conn_types=("google_cloud_platform",),
        console="gcs",
    ),
    Scheme(
        "s3",
        aliases=("s3a", "s3n"),
        object_store=True,
        server_side_copy=True,
        listing_checksums=True,
        md5_etag=True,
        url_credentials_ignored=True,
        timeouts="botocore",
        conn_types=("aws",),
        console="s3",
    ),
)
_BY_NAME = {name: scheme for scheme in SCHEMES for name in scheme.names}
UNKNOWN = Scheme("")  # any other fsspec filesystem: nothing assumed


def of(scheme: str) -> Scheme:
    """The entry for a scheme or alias (``"gcs"`` -> gs's); :data:`UNKNOWN` for others."""
    return _BY_NAME.get(scheme.lower(), UNKNOWN)


def of_url(url: str) -> Scheme:
    """The entry for a URL's scheme; a path without one is local."""
    return of(url.split("://", 1)[0]) if "://" in url else of("file")


def of_fs(fs: AbstractFileSystem) -> Scheme:
    """The entry for an fsspec filesystem (by its first protocol)."""
    proto = fs.protocol
    return of(proto if isinstance(proto, str) else proto[0])


def canonical(scheme: str) -> str:
    """``"gcs"`` -> ``"gs"``, ``"s3a"`` -> ``"s3"``; an unknown scheme unchanged."""
    entry = of(scheme)
    return entry.name or scheme


def console_url(url: str | None) -> str:
    """The web console page of a directory on a store that has one; "" otherwise."""
    if not url or "://" not in url:
        return ""
    scheme, rest = url.split("://", 1)
    bucket, _, path = rest.partition("/")
    path = path.strip("/")
    console = of(scheme).console
    if console == "gcs":
        return f"https://console.cloud.google.com/storage/browser/{quote(bucket)}/{quote(path)}"
    if console == "s3":
        prefix = quote(f"{path}/" if path else "")
        return f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}?prefix={prefix}"
    return ""
