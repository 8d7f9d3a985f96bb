"""Claims, locks and leases beside the versions under a base path: how concurrent publishers,
serving-config writers and retention stay out of each other's way on any filesystem.

- A **claim** gives one caller a name (a version number, a lock) with a create-if-absent
  write: GCS by the lowest object generation among the claimants' own objects, S3 and others by
  a conditional create, memory by a process lock.
- A **lock** (:func:`exclusive`) serialises short read-change-write steps such as serving-config
  updates: ``flock`` on local disks, on object stores a claim renewed while it is held and
  broken by others once its newest write is older than a time-to-live (its holder died or
  stalled); a holder checks it still holds the lock before it writes (:meth:`Held.check`).
- A **lease** is a publisher's renewed promise that its staging area and version are in use.
  Retention never removes what a live lease names; once a lease has expired (its publisher
  died), what it named is reclaimed. Ages are judged by the store's own timestamps against the
  store's own clock (:func:`store_now`), with a margin, never by comparing two machines' clocks;
  a publisher whose renewals stopped succeeding stops before it names anything
  (:meth:`Lease.check`).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import schemes
from airflow_savedmodel.errors import LockLostError, StorageError
from airflow_savedmodel.location import children, is_local, join, url_of, write_atomic

CLAIMS_DIR = ".savedmodel-claims"
LEASES_DIR = ".savedmodel-leases"
DEFAULT_LEASE_SECONDS = 120.0
LOCK_TTL_SECONDS = 60.0
# Slack for timestamps that come from different parts of a store, and for a renewal in flight.
CLOCK_MARGIN_SECONDS = 30.0
_MEMORY_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def store_now(fs: AbstractFileSystem, base: str) -> float:
    """The store's own clock: the modification time it gives a probe object written now (this
    machine's clock only when the store reports no time)."""
    probe = join(base, LEASES_DIR, f".clock-{uuid.uuid4().hex[:16]}")
    try:
        fs.pipe_file(probe, b"")
        fs.invalidate_cache(join(base, LEASES_DIR))
        stamp = _modified(fs, probe)
    except (FileNotFoundError, OSError):
        stamp = None
    finally:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.rm(probe)
    return time.time() if stamp is None else stamp


def new_token() -> str:
    return f"{int(time.time())}-{uuid.uuid4().hex[:16]}"


def claim(fs: AbstractFileSystem, path: str, token: str) -> bool:
    """Take the name ``path`` for ``token``; True if this caller won it (and no one else can)."""
    claim_by = schemes.of_fs(fs).claim
    if claim_by == "generation":
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
    if claim_by == "process":
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
        if schemes.of_fs(fs).claim == "generation":
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


class Held:
    """A lock this caller holds; :meth:`check` says whether it still does (an object-store lock
    is broken by others when its holder stalls past the time-to-live)."""

    def __init__(self, fs: AbstractFileSystem, path: str, token: str | None, waited: float = 0.0) -> None:
        self.fs, self.path, self.token = fs, path, token
        self.waited = waited  # seconds spent queued behind other holders before this one got it

    def holds(self) -> bool:
        if self.token is None:  # flock: held until released
            return True
        try:
            if schemes.of_fs(self.fs).claim == "generation":
                self.fs.invalidate_cache(self.path)
                entries = [e for e in self.fs.ls(self.path, detail=True) if not _is_heartbeat(e["name"])]
                winner = min(entries, key=lambda e: (int(e.get("generation") or 0), e["name"]))
                return str(winner["name"]).rstrip("/").endswith("/" + self.token)
            return bool(self.fs.cat_file(self.path).decode(errors="replace") == self.token)
        except (FileNotFoundError, OSError, ValueError):
            return False

    def check(self) -> None:
        if not self.holds():
            raise LockLostError(
                "the lock was taken over while this writer stalled", url_of(self.fs, self.path)
            )


def _is_heartbeat(name: str) -> bool:
    return str(name).rstrip("/").endswith(".alive")


def _renew_lock(fs: AbstractFileSystem, path: str, token: str, every: float, stop: threading.Event) -> None:
    """Keep a held object-store lock young, so that only a dead or stalled holder loses it."""
    while not stop.wait(every):
        try:
            if schemes.of_fs(fs).claim == "generation":  # a beside object: the claim's generation decides
                fs.pipe_file(join(path, token + ".alive"), token.encode())
            else:
                fs.pipe_file(path, token.encode())
        except Exception as exc:  # retried on the next tick; the time-to-live is the backstop
            log.warning("renewing the lock %s failed: %s", url_of(fs, path), exc)


@contextlib.contextmanager
def exclusive(
    fs: AbstractFileSystem, path: str, *, ttl: float | None = None, timeout: float = 120.0
) -> Iterator[Held]:
    """Hold the lock ``path`` for a short read-change-write; StorageError after ``timeout`` s.

    On object stores the holder renews the lock every third of ``ttl``; a holder that died (or
    stalled, renewals included) leaves a lock that others break once it is older than ``ttl``
    (default :data:`LOCK_TTL_SECONDS`).
    """
    ttl = LOCK_TTL_SECONDS if ttl is None else ttl
    started = time.monotonic()
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield Held(fs, path, None, time.monotonic() - started)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    token = new_token()
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not claim(fs, path, token):
        if schemes.of_fs(fs).claim == "generation":
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(join(path, token))
        age = age_seconds(fs, path, store_now(fs, path.rpartition("/")[0]))
        if age is not None and age > ttl:
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(path, recursive=True)
        if time.monotonic() > deadline:
            raise StorageError(f"lock held by another writer for more than {timeout:.0f}s", url_of(fs, path))
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_lock, args=(fs, path, token, ttl / 3, stop), name=f"lock-{token}", daemon=True
    )
    renewer.start()
    try:
        yield Held(fs, path, token, time.monotonic() - started)
    finally:
        stop.set()
        renewer.join()
        release(fs, path, token)


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as retention reads it: ``written`` is the store's time of its last renewal and
    ``seconds`` how long the publisher promised to renew within."""

    token: str
    expires: float
    staging: str | None = None
    version: int | None = None
    seconds: float | None = None
    written: float | None = None
    versions: tuple[int, ...] = ()

    def live(self, now: float | None = None) -> bool:
        """Whether the publisher may still be at work, at the store's time ``now``: its last
        renewal (by the store's clock) plus its term and a margin is still ahead."""
        now = time.time() if now is None else now
        if self.seconds is not None and self.written is not None:
            # Both times are the store's; the margin covers a renewal in flight and the store's
            # timestamp granularity (S3: 1 s), at most a quarter of a (short, test-sized) term.
            margin = min(CLOCK_MARGIN_SECONDS, self.seconds / 4)
            return self.written + self.seconds + margin > now
        return self.expires > now  # a lease from before store times were used

    def named_versions(self) -> set[int]:
        return set(self.versions) | ({self.version} if self.version is not None else set())


class Lease:
    """A publisher's lease on its staging area and the versions it writes, renewed by a daemon
    thread every third of ``seconds`` until :meth:`close`."""

    def __init__(self, fs: AbstractFileSystem, base: str, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.fs, self.base, self.seconds = fs, base, float(seconds)
        self.token = new_token()
        self.path = join(base, LEASES_DIR, self.token + ".json")
        self.staging: str | None = None
        self.version: int | None = None
        self.versions: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._renewed = time.monotonic()

    def _write(self) -> None:
        doc = {
            "token": self.token,
            "expires": time.time() + self.seconds,
            "seconds": self.seconds,
            "staging": self.staging,
            "version": self.version,
            "versions": self.versions,
        }
        with self._lock:
            if not self._stop.is_set():
                started = time.monotonic()
                write_atomic(self.fs, self.path, json.dumps(doc).encode())
                self._renewed = started

    def start(self, staging: str | None = None) -> Lease:
        self.staging = staging
        self._write()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.token}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._write()
            except Exception as exc:  # retried on the next tick; check() stops the publish
                log.warning("renewing the publish lease %s failed: %s", url_of(self.fs, self.path), exc)

    def check(self) -> None:
        """Refuse to go on once the last successful renewal is a full term old: retention may
        already take this publisher for dead and reclaim what it named."""
        if time.monotonic() - self._renewed >= self.seconds:
            raise StorageError(
                f"the publish lease was not renewed for {self.seconds:.0f}s; stopping before "
                "anything is named",
                url_of(self.fs, self.path),
            )

    def set_version(self, version: int) -> None:
        """Record a version before any byte is written under it (every version it touches)."""
        self.check()
        self.version = version
        if version not in self.versions:
            self.versions.append(version)
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
        if kind != "file" or not name.endswith(".json") or name.startswith("."):
            continue
        path = join(root, name)
        try:
            doc = json.loads(fs.cat_file(path))
            out.append(
                LeaseInfo(
                    str(doc["token"]),
                    float(doc["expires"]),
                    doc.get("staging"),
                    None if doc.get("version") is None else int(doc["version"]),
                    None if doc.get("seconds") is None else float(doc["seconds"]),
                    _modified(fs, path),
                    tuple(int(n) for n in doc.get("versions") or ()),
                )
            )
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError):
            out.append(LeaseInfo(name[: -len(".json")], 0.0))
    return out


def stray_files(fs: AbstractFileSystem, base: str) -> list[str]:
    """Files in the leases folder that are not leases: temporary files of a lease write that
    died half way, and clock probes."""
    root = join(base, LEASES_DIR)
    return [
        join(root, name)
        for name, kind in children(fs, root, refresh=True)
        if kind == "file" and (name.startswith(".") or not name.endswith(".json"))
    ]
