"""Telling a storage library's network, auth or server failure (and a timeout) from a bug,
and turning it into one StorageError line that names the place and no secret."""

from __future__ import annotations

from collections.abc import Iterable

from airflow_savedmodel.errors import SavedModelError, StorageError
from airflow_savedmodel.location.redaction import redact, scrub

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
