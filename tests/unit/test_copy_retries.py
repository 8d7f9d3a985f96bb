"""Transient failures are retried with backoff; permanent ones fail at once; both leave no partial copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.storage import copy
from airflow_savedmodel.storage.transfer import is_transient, worth_recopying


class FlakyWrites(LocalFileSystem):
    """A real local disk behind a filesystem that is not the local one (so files are streamed
    through ``open`` as to an object store, not copied by the kernel), whose first ``failures``
    writes of matching files fail."""

    cachable = False
    protocol = ("flaky",)

    def __init__(self, failures: int, error: BaseException, match: str = "variables.data") -> None:
        super().__init__()
        self.failures, self.error, self.match = failures, error, match
        self.attempts = 0

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode and self.match in str(path):
            self.attempts += 1
            if self.attempts <= self.failures:
                raise self.error
        return super().open(path, mode, **kwargs)


def test_transient_errors_are_retried(zoo: dict[str, Path], tmp_path: Path) -> None:
    flaky = FlakyWrites(2, ConnectionResetError(104, "Connection reset by peer"))
    result = copy(str(zoo["tf2_module"]), str(tmp_path / "dst"), dst_fs=flaky, retries=3, backoff=0.01)
    assert flaky.attempts == 3
    assert result.files == len([p for p in zoo["tf2_module"].rglob("*") if p.is_file()])
    assert (tmp_path / "dst" / "variables" / "variables.data-00000-of-00001").read_bytes() == (
        zoo["tf2_module"] / "variables" / "variables.data-00000-of-00001"
    ).read_bytes()


def test_giving_up_after_retries_removes_the_partial_copy(zoo: dict[str, Path], tmp_path: Path) -> None:
    flaky = FlakyWrites(10, TimeoutError("timed out"))
    with pytest.raises(StorageError, match="TimeoutError: timed out"):
        copy(str(zoo["tf2_module"]), str(tmp_path / "dst"), dst_fs=flaky, retries=2, backoff=0.01)
    assert flaky.attempts == 3
    assert not (tmp_path / "dst").exists()


def test_permanent_errors_are_not_retried(zoo: dict[str, Path], tmp_path: Path) -> None:
    flaky = FlakyWrites(10, PermissionError(13, "Permission denied"))
    with pytest.raises(StorageError, match="Permission denied"):
        copy(str(zoo["tf2_module"]), str(tmp_path / "dst"), dst_fs=flaky, retries=5, backoff=0.01)
    assert flaky.attempts == 1


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError(5, "I/O error"), True),
        (FileNotFoundError(), False),
        (PermissionError(), False),
        (ValueError("bug"), False),
        (type("HttpError", (Exception,), {"code": 503})(), True),
        (type("HttpError", (Exception,), {"code": 404})(), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


HttpError = type("HttpError", (Exception,), {"code": 503})


def test_http_errors_are_left_to_the_storage_librarys_own_retries(
    zoo: dict[str, Path], tmp_path: Path
) -> None:
    """gcsfs and s3fs retried the request already; a whole-file re-copy on top would multiply
    the attempts (6 per request x our retries). Only broken streams and checksum mismatches are."""
    flaky = FlakyWrites(10, HttpError("service unavailable"))
    with pytest.raises(StorageError, match="HttpError: service unavailable"):
        copy(str(zoo["tf2_module"]), str(tmp_path / "dst"), dst_fs=flaky, retries=5, backoff=0.01)
    assert flaky.attempts == 1
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize(
    ("error", "recopy"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError(), True),
        (__import__("http.client").client.IncompleteRead(b"partial", 10), True),
        (__import__("aiohttp").ClientPayloadError("Response payload is not completed"), True),
        (__import__("airflow_savedmodel.errors").errors.ChecksumError("crc differs", "f"), True),
        (HttpError(), False),
        (OSError(5, "I/O error"), False),
        (PermissionError(), False),
        (ValueError("bug"), False),
    ],
)
def test_worth_recopying(error: BaseException, recopy: bool) -> None:
    assert worth_recopying(error) is recopy
