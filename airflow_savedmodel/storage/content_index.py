"""Which versions under a base path hold which content, so that a publish recognizes a model
it has already published with a few requests, whatever the history (storage/publish.py).

Empty objects under ``BASE/.savedmodel-index/``: ``shape-<h>`` says some version has files of
these paths and sizes (only then is the source worth checksumming), ``content-<h>/<N>`` says
version N was published with this content (every identifying file's path, size and crc32c).
A publisher writes both before its version becomes visible, so a version whose publish
completed is indexed. The index is a hint, never the truth: a version it names is read and
checked (complete, the same content, signed by the same signer) before it is reused, and a
marker whose version is gone or holds other content is deleted when met (retention deletes the
markers of the versions it removes).

``ready`` says the index covers every version: a base path published to by an earlier release of
this package (or by another tool) is indexed once, from one telling of its versions, by the
first publish that finds no ``ready``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.storage import manifest as manifests

INDEX_DIR = ".savedmodel-index"
READY = "ready"
_AT_ONCE = 8  # markers written at once (indexing a long history once: bounded, not all at once)

log = logging.getLogger(__name__)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(sorted(value)).encode()).hexdigest()[:32]


def _shape_path(base: str, shape: frozenset[tuple[str, int]]) -> str:
    return location.join(base, INDEX_DIR, f"shape-{_digest(shape)}")


def _holders_dir(base: str, key: tuple[tuple[str, int, str], ...]) -> str:
    return location.join(base, INDEX_DIR, f"content-{_digest(key)}")


def _exists(fs: AbstractFileSystem, path: str) -> bool:
    try:
        location.fresh_info(fs, path)
        return True
    except FileNotFoundError:
        return False


def _touch(fs: AbstractFileSystem, paths: list[str]) -> None:
    if location.is_local(fs):
        for path in paths:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with open(path, "wb"):
                pass
    else:
        fs.pipe(dict.fromkeys(paths, b""), batch_size=_AT_ONCE)


def is_ready(fs: AbstractFileSystem, base: str) -> bool:
    return _exists(fs, location.join(base, INDEX_DIR, READY))


def has_shape(fs: AbstractFileSystem, base: str, shape: frozenset[tuple[str, int]]) -> bool:
    """Whether some version was published with files of these paths and sizes."""
    return _exists(fs, _shape_path(base, shape))


def holders(fs: AbstractFileSystem, base: str, key: tuple[tuple[str, int, str], ...]) -> list[int]:
    """The versions published with this content, newest first (to be checked before reuse)."""
    names = location.children(fs, _holders_dir(base, key), refresh=True)
    return sorted((int(name) for name, _ in names if name.isdigit()), reverse=True)


def add(fs: AbstractFileSystem, base: str, manifest: manifests.Manifest, number: int) -> None:
    """Index version ``number`` before it becomes visible. Best effort: a version the index
    misses is only published again, never served wrong."""
    try:
        _touch(
            fs,
            [
                _shape_path(base, manifest.shape()),
                location.join(_holders_dir(base, manifest.content_key()), str(number)),
            ],
        )
    except Exception as exc:
        log.warning("content index of %s not updated: %s", location.url_of(fs, base), exc)


def forget(fs: AbstractFileSystem, base: str, key: tuple[tuple[str, int, str], ...], number: int) -> None:
    """Drop the marker saying version ``number`` holds this content (best effort)."""
    location.remove_quietly(fs, location.join(_holders_dir(base, key), str(number)))


def build(fs: AbstractFileSystem, base: str, complete: Iterable[tuple[int, manifests.Manifest]]) -> None:
    """Index ``(number, manifest)`` of every complete version, then mark the index ready: once
    for a base path the index did not cover."""
    paths = set()
    for number, manifest in complete:
        paths.add(_shape_path(base, manifest.shape()))
        paths.add(location.join(_holders_dir(base, manifest.content_key()), str(number)))
    try:
        _touch(fs, sorted(paths))
        mark_ready(fs, base)
    except Exception as exc:
        log.warning("content index of %s not built: %s", location.url_of(fs, base), exc)


def mark_ready(fs: AbstractFileSystem, base: str) -> None:
    location.write_atomic(fs, location.join(base, INDEX_DIR, READY), b"airflow-savedmodel/content-index/v1\n")
