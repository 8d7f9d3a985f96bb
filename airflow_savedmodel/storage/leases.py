"""Claims, locks and leases beside the versions under a base path: how concurrent publishers,
serving-config writers and retention stay out of each other's way on any filesystem.

- A **claim** gives one caller a name (a version number, a lock) with a create-if-absent
  write: GCS by the lowest object generation among the claimants' own objects, S3 and others by
  a conditional create, memory by a process lock.
- A **lock** (:func:`exclusive`) serialises short read-change-write steps such as serving-config
  updates: ``flock`` on local disks, a claim with a time-to-live on object stores.
- A **lease** is a publisher's renewed promise that its staging area and version are in use.
  Retention never removes what a live lease names; once a lease has expired (its publisher
  died), what it named is reclaimed.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.location import children, is_local, join, protocol, url_of, write_atomic

CLAIMS_DIR = ".savedmodel-claims"
LEASES_DIR = ".savedmodel-leases"
DEFAULT_LEASE_SECONDS = 120.0
LOCK_TTL_SECONDS = 60.0
_MEMORY_LOCK = threading.Lock()


def new_token() -> str:
    return f"{int(time.time())}-{uuid.uuid4().hex[:16]}"


def claim(fs: AbstractFileSystem, path: str, token: str) -> bool:
    """Take the name ``path`` for ``token``; True if this caller won it (and no one else can)."""
    proto = protocol(fs)
    if proto in ("gs", "gcs"):
        # Every claimant writes its own object; generations grow with completion time and
        # listings are strongly consistent, so the lowest generation is the first and only winner.
        fs.pipe_file(join(path, token), token.encode())
        fs.invalidate_cache(path)
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:  # retention removed the claim: its version exists by now
            return False
        if not any(str(e["name"]).rstrip("/").endswith("/" + token) for e in entries):
            return False
        winner = min(entries, key=lambda e: (int(e.get("generation") or 0), e["name"]))
        return str(winner["name"]).rstrip("/").endswith("/" + token)
    if proto == "memory":
        with _MEMORY_LOCK:
            if fs.exists(path):
                return False
            fs.pipe_file(path, token.encode())
            return True
    try:
        fs.pipe_file(path, token.encode(), mode="create")
    except FileExistsError:
        return False
    return True


def release(fs: AbstractFileSystem, path: str, token: str) -> None:
    """Give up a claim this caller won (best effort: an expired claim is reclaimed anyway)."""
    with contextlib.suppress(FileNotFoundError, OSError):
        if protocol(fs) in ("gs", "gcs"):
            fs.rm(path, recursive=True)
        elif fs.cat_file(path).decode(errors="replace") == token:
            fs.rm(path)


def age_seconds(fs: AbstractFileSystem, path: str, now: float | None = None) -> float | None:
    """Seconds since ``path`` (a file, or the newest object below a claim directory) was written."""
    now = time.time() if now is None else now
    try:
        if fs.isdir(path):
            stamps = [_modified(fs, join(path, n)) for n, kind in children(fs, path, refresh=True)]
            known = [s for s in stamps if s is not None]
            return now - max(known) if known else None
        stamp = _modified(fs, path)
    except (FileNotFoundError, OSError):
        return None
    return None if stamp is None else now - stamp


def _modified(fs: AbstractFileSystem, path: str) -> float | None:
    try:
        stamp = fs.modified(path)
    except (FileNotFoundError, NotImplementedError, OSError, KeyError, ValueError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return float(stamp.timestamp())


@contextlib.contextmanager
def exclusive(
    fs: AbstractFileSystem, path: str, *, ttl: float = LOCK_TTL_SECONDS, timeout: float = 120.0
) -> Iterator[None]:
    """Hold the lock ``path`` for a short read-change-write; StorageError after ``timeout`` s.

    A holder that died leaves a lock that others break once it is older than ``ttl``.
    """
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    token = new_token()
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not claim(fs, path, token):
        if protocol(fs) in ("gs", "gcs"):
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(join(path, token))
        age = age_seconds(fs, path)
        if age is not None and age > ttl:
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(path, recursive=True)
        if time.monotonic() > deadline:
            raise StorageError(f"lock held by another writer for more than {timeout:.0f}s", url_of(fs, path))
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    try:
        yield
    finally:
        release(fs, path, token)


@dataclass(frozen=True)
class LeaseInfo:
    token: str
    expires: float
    staging: str | None = None
    version: int | None = None

    def live(self, now: float | None = None) -> bool:
        return self.expires > (time.time() if now is None else now)


class Lease:
    """A publisher's lease on its staging area and claimed version, renewed by a daemon thread
    every third of ``seconds`` until :meth:`close`."""

    def __init__(self, fs: AbstractFileSystem, base: str, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.fs, self.base, self.seconds = fs, base, float(seconds)
        self.token = new_token()
        self.path = join(base, LEASES_DIR, self.token + ".json")
        self.staging: str | None = None
        self.version: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        doc = {
            "token": self.token,
            "expires": time.time() + self.seconds,
            "staging": self.staging,
            "version": self.version,
        }
        with self._lock:
            if not self._stop.is_set():
                write_atomic(self.fs, self.path, json.dumps(doc).encode())

    def start(self, staging: str | None = None) -> Lease:
        self.staging = staging
        self._write()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.token}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with contextlib.suppress(Exception):  # a missed renewal is retried; expiry is the backstop
                self._write()

    def set_version(self, version: int) -> None:
        """Record the claimed version before any byte is written under it."""
        self.version = version
        self._write()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(self.path)
        if is_local(self.fs):  # leave no empty bookkeeping directory behind (fails if others lease)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def leases(fs: AbstractFileSystem, base: str) -> list[LeaseInfo]:
    """Every lease under ``base``, live or expired (unreadable ones count as expired)."""
    root = join(base, LEASES_DIR)
    out = []
    for name, kind in children(fs, root, refresh=True):
        if kind != "file" or not name.endswith(".json"):
            continue
        try:
            doc = json.loads(fs.cat_file(join(root, name)))
            out.append(
                LeaseInfo(
                    str(doc["token"]),
                    float(doc["expires"]),
                    doc.get("staging"),
                    None if doc.get("version") is None else int(doc["version"]),
                )
            )
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError):
            out.append(LeaseInfo(name[: -len(".json")], 0.0))
    return out
