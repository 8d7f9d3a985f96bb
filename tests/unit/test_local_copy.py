"""Local-to-local copies: the kernel copies, both files are read back (overlapped on big files),
and a destination that differs from its source is caught, copied again, or refused."""

from __future__ import annotations

import os
from pathlib import Path

import google_crc32c
import pytest

from airflow_savedmodel import location
from airflow_savedmodel.errors import ChecksumError
from airflow_savedmodel.storage import copy


@pytest.mark.parametrize("size", [0, 1000, (9 << 20) + 123])
def test_checked_copy_reads_both_sides_back(tmp_path: Path, size: int) -> None:
    """Sizes below and above the overlap threshold (4 MB), so both read-back paths run; the
    checksums are compared with google_crc32c's, an implementation other than ours."""
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    advanced: list[int] = []
    result = location.copy_local_checked(str(tmp_path / "src"), str(tmp_path / "dst"), advanced.append)
    assert (tmp_path / "dst").read_bytes() == data
    expected = google_crc32c.value(data)
    assert result == location.CheckedCopy(expected, size, expected, size, size)
    assert sum(advanced) == size


def _model(tmp_path: Path) -> Path:
    """A small servable model written by the package itself (no TensorFlow), with one variables
    shard big enough (~5 MB) for the overlapped read-back."""
    import numpy as np

    from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

    rng = np.random.default_rng(0)
    layers = [DenseLayer(rng.standard_normal((1024, 1280), np.float32), np.zeros(1280, np.float32), "relu")]
    return Path(export_dense_model(str(tmp_path / "model"), layers))


def _corrupting_pwrite(times: int) -> tuple[list[int], object]:
    """os.pwrite that flips the first byte of the variables shard (the one file with full 1 MB
    blocks) ``times`` times: once per attempt to copy it."""
    real = os.pwrite
    count = [0]

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if count[0] < times and offset == 0 and len(data) == location.LOCAL_CHUNK:
            count[0] += 1
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        return real(fd, data, offset)

    return count, pwrite


def _no_copy_file_range(*args: object) -> int:
    raise OSError(18, "Invalid cross-device link")  # what a copy across filesystems gets


def test_a_corrupted_local_copy_is_copied_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel cannot copy across these filesystems (EXDEV), so bytes are streamed; the first
    write is corrupted on its way: the read-back catches it and the file is copied again."""
    model = _model(tmp_path)
    count, pwrite = _corrupting_pwrite(1)
    monkeypatch.setattr(os, "copy_file_range", _no_copy_file_range)
    monkeypatch.setattr(os, "pwrite", pwrite)
    result = copy(str(model), str(tmp_path / "dst"), backoff=0.01)
    assert count[0] == 1
    assert result.files == len([p for p in model.rglob("*") if p.is_file()])
    for file in model.rglob("*"):
        if file.is_file():
            assert (tmp_path / "dst" / file.relative_to(model)).read_bytes() == file.read_bytes()


def test_a_local_copy_that_stays_corrupted_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(tmp_path)
    count, pwrite = _corrupting_pwrite(100)
    monkeypatch.setattr(os, "copy_file_range", _no_copy_file_range)
    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(ChecksumError, match="destination content differs from the source after the copy"):
        copy(str(model), str(tmp_path / "dst"), retries=2, backoff=0.01)
    assert count[0] == 3  # the first attempt and two more
    assert not (tmp_path / "dst").exists()
    assert (model / "saved_model.pb").exists()
