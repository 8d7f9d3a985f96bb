"""Triggers for the deferrable SavedModel sensors: poll storage (or TF Serving's REST status)
from the triggerer's event loop.

One base class holds the polling loop. Each poll first lists the watched prefix with the
filesystem's native async call (gcsfs and s3fs run it on their own event loop; the trigger only
awaits it), so a waiting sensor costs one list request and no thread per poll. Only when the
listing changed is the readiness check run, in a worker thread (it reads small files through
fsspec's blocking API). Transient storage errors (timeouts, 5xx, 429, dropped connections) are
retried with jittered exponential backoff; permanent ones (bad credentials, no such bucket) end
the wait as an error event the sensor turns into a task failure. Connections are resolved by
the hook, so their secrets are masked in the triggerer's log like in a task's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_savedmodel.deprecation import renamed
from airflow_savedmodel.triggers import shared

MAX_BACKOFF_SECONDS = 600.0


def _location_key(conn_id: str | None, storage_options: dict[str, Any] | None, url: str) -> tuple[str, ...]:
    """Triggers with equal keys watch the same objects the same way and share their listing."""
    import json

    options = json.dumps(storage_options or {}, sort_keys=True, default=str)
    return (conn_id or "", options, url.rstrip("/"))


def _max_age(poke_interval: float) -> float:
    """How old a listing another trigger made may be and still answer this one's poll: the
    triggers of a location poll on the same ticks, so a listing made at this tick (a second at
    most, a quarter of a short interval) is shared and an event comes no later for it."""
    return min(1.0, float(poke_interval) / 4)


def backoff_seconds(failures: int, poke_interval: float) -> float:
    """Full-jitter exponential backoff after ``failures`` transient errors in a row."""
    ceiling = min(MAX_BACKOFF_SECONDS, max(1.0, poke_interval) * 2 ** min(failures, 16))
    return random.uniform(ceiling / 2, ceiling)


class SavedModelPollingTrigger(BaseTrigger):
    """Poll one storage location until :meth:`check` says it is ready.

    Subclasses name the location (:meth:`watched`), the blocking readiness check and the event.
    """

    def __init__(
        self, savedmodel_conn_id: str | None, storage_options: dict[str, Any] | None, poke_interval: float
    ) -> None:
        super().__init__()
        self.savedmodel_conn_id = savedmodel_conn_id
        self.storage_options = storage_options
        self.poke_interval = poke_interval

    def watched(self) -> str:
        raise NotImplementedError

    def check_key(self) -> tuple[Any, ...]:
        """What makes :meth:`check`'s answer differ between triggers watching one location."""
        raise NotImplementedError

    async def ready_on(self, poll: shared.SharedPoll, listing: Any, where: Any) -> Any:
        """The readiness for ``listing``: checked once for every trigger that asks the same."""
        return await poll.check(
            self.check_key(), listing, lambda: shared.in_thread(self.check, where.fs, where.path)
        )

    def check(self, fs: Any, path: str) -> Any:
        """The Readiness (storage/versions.py) of the watched location; blocking."""
        raise NotImplementedError

    def success(self, found: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def waiting(self, reason: str) -> str:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await _imported()
        from airflow_savedmodel import location
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook
        from airflow_savedmodel.storage.transfer import is_transient

        hook = SavedModelHook(self.savedmodel_conn_id, self.storage_options)
        try:
            where = await hook.afilesystem(self.watched())
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": self._message(exc, hook)})
            return
        seen: Any = None
        ready: Any = None
        failures = 0
        last_said = ""
        key = _location_key(self.savedmodel_conn_id, self.storage_options, self.watched())
        poll = shared.poll_for(key)
        while True:
            try:
                listing = await poll.list(
                    lambda: location.alisting(where.fs, where.path), _max_age(self.poke_interval)
                )
                if ready is None or listing != seen:
                    ready = await self.ready_on(poll, listing, where)
                    seen = listing
                failures = 0
            except Exception as exc:
                if not is_transient(exc):
                    yield TriggerEvent({"status": "error", "message": self._message(exc, hook)})
                    return
                failures += 1
                delay = backoff_seconds(failures, self.poke_interval)
                self.log.warning(
                    "Transient storage error %d in a row (%s); next check in %.0fs",
                    failures,
                    self._message(exc, hook),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if ready.done:
                yield TriggerEvent({"status": "success", **self.success(ready.found)})
                return
            said = self.waiting(ready.waiting_for)
            if said != last_said:  # a line when what is missing changes, not one per poll
                self.log.info("%s; checking every %ss", said, self.poke_interval)
                last_said = said
            await asyncio.sleep(shared.next_tick(key, self.poke_interval))

    def _message(self, exc: BaseException, hook: Any) -> str:
        from airflow_savedmodel import location
        from airflow_savedmodel.errors import SavedModelError

        if isinstance(exc, SavedModelError):
            return f"{type(exc).__name__}: {exc}"
        if location.is_storage_failure(exc):  # a timeout says so, naming the watched URL
            return str(location.storage_error(exc, self.watched(), hook.secrets()))
        return location.scrub(f"{type(exc).__name__}: {exc}", hook.secrets())


class SavedModelTrigger(SavedModelPollingTrigger):
    """Fires when a complete, valid SavedModel exists at ``model_url``."""

    @renamed(url="model_url", conn_id="savedmodel_conn_id")
    def __init__(
        self,
        model_url: str,
        savedmodel_conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        deep: bool = False,
        poke_interval: float = 60.0,
        *,
        signed: bool = False,
    ) -> None:
        super().__init__(savedmodel_conn_id, storage_options, poke_interval)
        self.model_url = model_url
        self.deep = deep
        self.signed = signed  # also wait for model.sig (the sensor verifies it in a worker)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelTrigger",
            {
                "model_url": self.model_url,
                "savedmodel_conn_id": self.savedmodel_conn_id,
                "storage_options": self.storage_options,
                "deep": self.deep,
                "poke_interval": self.poke_interval,
                "signed": self.signed,
            },
        )

    def watched(self) -> str:
        return self.model_url

    def check_key(self) -> tuple[Any, ...]:
        return ("model", bool(self.deep), bool(self.signed))

    def check(self, fs: Any, path: str) -> Any:
        from airflow_savedmodel.storage.versions import model_readiness

        return model_readiness(fs, path, self.deep, self.signed)

    def success(self, found: dict[str, Any]) -> dict[str, Any]:
        return {"model": found}

    def waiting(self, reason: str) -> str:
        return f"No complete SavedModel at {self.model_url} yet: {reason}"


class SavedModelVersionTrigger(SavedModelPollingTrigger):
    """Fires when ``base_path`` holds a complete version newer than ``newer_than``."""

    @renamed(conn_id="savedmodel_conn_id")
    def __init__(
        self,
        base_path: str,
        newer_than: int | None = None,
        savedmodel_conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        poke_interval: float = 60.0,
        *,
        signed: bool = False,
    ) -> None:
        super().__init__(savedmodel_conn_id, storage_options, poke_interval)
        self.base_path = base_path
        self.newer_than = newer_than
        self.signed = signed  # only versions that have model.sig (the sensor verifies it in a worker)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelVersionTrigger",
            {
                "base_path": self.base_path,
                "newer_than": self.newer_than,
                "savedmodel_conn_id": self.savedmodel_conn_id,
                "storage_options": self.storage_options,
                "poke_interval": self.poke_interval,
                "signed": self.signed,
            },
        )

    def watched(self) -> str:
        return self.base_path

    def check_key(self) -> tuple[Any, ...]:
        return ("newer", self.newer_than, bool(self.signed))

    async def ready_on(self, poll: shared.SharedPoll, listing: Any, where: Any) -> Any:
        """The versions are told once per listing for every trigger of the base path; which of
        them this sensor waits for is its own (a signed wait looks for model.sig in a thread)."""
        from airflow_savedmodel.storage.versions import newer_version_readiness

        found = (await _versions(poll, where.fs, where.path, listing)).versions
        if self.signed:
            return await shared.in_thread(
                newer_version_readiness, where.fs, where.path, self.newer_than, True, found
            )
        return newer_version_readiness(where.fs, where.path, self.newer_than, False, found)

    def check(self, fs: Any, path: str) -> Any:
        from airflow_savedmodel.storage.versions import newer_version_readiness

        return newer_version_readiness(fs, path, self.newer_than, self.signed)

    def success(self, found: dict[str, Any]) -> dict[str, Any]:
        return {"version": found}

    def waiting(self, reason: str) -> str:
        return f"Waiting for a complete version under {self.base_path}: {reason}"


class SavedModelServedTrigger(BaseTrigger):
    """Fires when every TF Serving replica reports the version AVAILABLE (or serves the label),
    or one ended it in an error state (the event then carries TF Serving's error), or a replica
    trails the first ready one by more than ``max_lag_seconds``, or the timeout passes. Polls
    each replica's REST API with aiohttp on the triggerer's loop, all at once; a name found by
    DNS is resolved again at every poll. When no replica answers (a restart) it backs off.

    The event: ``status`` (success, timeout, lagging, error), ``replicas`` (each replica's
    status, or why it did not answer), ``served`` (one status: a failed replica's, else the
    first's), ``version``, and for timeout and lagging the seconds ``waited`` and the ``limit``.
    """

    def __init__(
        self,
        server_url: str | list[str] | None,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        poke_interval: float = 60.0,
        *,
        timeout: float | None = None,
        tf_serving_conn_id: str | None = None,
        max_lag_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.server_url, self.model_name = server_url, model_name
        self.version, self.version_label = version, version_label
        self.poke_interval = poke_interval
        self.timeout, self.tf_serving_conn_id = timeout, tf_serving_conn_id
        self.max_lag_seconds = max_lag_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelServedTrigger",
            {
                "server_url": self.server_url,
                "model_name": self.model_name,
                "version": self.version,
                "version_label": self.version_label,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
                "tf_serving_conn_id": self.tf_serving_conn_id,
                "max_lag_seconds": self.max_lag_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await _imported(_SERVED_MODULES)
        from airflow_savedmodel.hooks.tfserving import TFServingHook

        hook = TFServingHook(self.server_url or None, self.tf_serving_conn_id or None)
        # The connection is read here, in the triggerer: only its id is serialized.
        fleet = await hook.afleet()
        # The event is yielded once the HTTP session is closed: a generator closed after its
        # event (as the triggerer and tests do) then has nothing left to await.
        yield TriggerEvent(await self._outcome(hook, fleet))

    def _ready(self, value: Any) -> bool:
        from airflow_savedmodel.tfserving import VersionStatus

        if not isinstance(value, dict):
            return False
        found = VersionStatus(**value)
        return found.available and (self.version is None or found.version == int(self.version))

    def _event(self, status: str, found: dict[str, Any], **extra: Any) -> dict[str, Any]:
        from airflow_savedmodel.tfserving import VersionStatus

        statuses = [v for v in found.values() if isinstance(v, dict)]
        failed = [v for v in statuses if VersionStatus(**v).failed]
        served = failed[0] if failed else (statuses[0] if statuses else None)
        return {"status": status, "served": served, "replicas": found, "version": self.version, **extra}

    async def _outcome(self, hook: Any, fleet: Any) -> dict[str, Any]:
        """Poll until every replica serves it, one fails it, one lags, or the timeout passes."""
        from airflow_savedmodel.errors import SavedModelError
        from airflow_savedmodel.release.fleet import progress
        from airflow_savedmodel.tfserving import VersionStatus, client_session

        start = time.monotonic()
        deadline = None if self.timeout is None else start + float(self.timeout)
        first_ready: float | None = None
        # One session for every poll: connections and TLS set-up are kept, not redone per poll.
        async with client_session(_plain(fleet)) as session:
            failures = 0
            found: dict[str, Any] = {}
            said = ""
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return self._event("timeout", found, waited=now - start, limit=float(self.timeout or 0))
                try:
                    found = await hook.astatuses(
                        fleet, self.model_name, self.version, self.version_label, session
                    )
                except SavedModelError as exc:
                    return {
                        "status": "error",
                        "message": f"{type(exc).__name__}: {exc}",
                        "version": self.version,
                    }
                answered = [v for v in found.values() if isinstance(v, dict)]
                if not answered:  # no replica answers: the fleet restarting, the network
                    failures += 1
                    delay = backoff_seconds(failures, self.poke_interval)
                    self.log.warning(
                        "TF Serving unreachable (%s); next check in %.0fs",
                        "; ".join(map(str, found.values())),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if any(VersionStatus(**v).failed for v in answered):
                    return self._event("success", found)
                if all(self._ready(v) for v in found.values()):
                    return self._event("success", found)
                now = time.monotonic()
                if first_ready is None and any(self._ready(v) for v in found.values()):
                    first_ready = now
                lag = None if self.max_lag_seconds is None else float(self.max_lag_seconds)
                if lag is not None and first_ready is not None and now - first_ready >= lag:
                    return self._event("lagging", found, waited=now - start, limit=lag)
                text = (
                    progress(found, int(self.version)) if self.version is not None else _label_progress(found)
                )
                if text != said:  # a line when the answer changes, not every poll
                    said = text
                    self.log.info("Waiting for %s on TF Serving: %s", self.model_name, said)
                await asyncio.sleep(
                    self.poke_interval
                    if deadline is None
                    else max(0.0, min(self.poke_interval, deadline - time.monotonic()))
                )


def _plain(fleet: Any) -> Any:
    """An endpoint carrying the fleet's headers and timeout, for the shared HTTP session."""
    from airflow_savedmodel.tfserving import Endpoint

    return Endpoint("http://replicas", fleet.headers, fleet.verify, fleet.timeout)


def _label_progress(found: dict[str, Any]) -> str:
    from airflow_savedmodel.release.fleet import waiting_text

    return "; ".join(f"{replica}: {waiting_text(value)}" for replica, value in sorted(found.items()))


try:  # event-driven scheduling (AssetWatcher) needs BaseEventTrigger, in Airflow since 3.0
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # pragma: no cover - older Airflow: the watcher cannot be used there
    BaseEventTrigger = BaseTrigger  # type: ignore[misc,assignment]

# Where a watcher remembers the last version it announced (Airflow's asset state store, 3.3+).
ANNOUNCED_KEY = "savedmodel_announced_version"


class SavedModelNewVersionTrigger(BaseEventTrigger):
    """Emits an event for every complete version that appears under ``base_path``: the trigger of
    an ``AssetWatcher``, so a DAG is scheduled on "a new version exists" for models published
    outside Airflow (TFX's Pusher, a notebook, ``savedmodel publish``), with no sensor task.

    The event's payload holds ``version``, ``uri`` and ``fingerprint``; versions that complete
    together are announced one by one, oldest first. On its first start the watcher announces
    nothing that already exists (unless ``newer_than`` says from where); it then remembers the
    last version it announced in Airflow's asset state store (Airflow 3.3+), so a restarted
    triggerer neither repeats a version nor misses one published while it was down. Watchers of
    the same base path (same connection, options, interval) share one listing per poll. Storage
    errors are logged and retried with backoff: a watcher never ends.

    :param base_path: the serving base path to watch.
    :param savedmodel_conn_id: a connection for ``base_path`` (gs://, s3://).
    :param storage_options: fsspec options, for use without a connection.
    :param poke_interval: seconds between listings.
    :param newer_than: announce versions above this number (default: above the newest present
        at the first start).
    :param signed: announce only versions that carry their signature (model.sig).
    """

    @renamed(conn_id="savedmodel_conn_id")
    def __init__(
        self,
        base_path: str,
        savedmodel_conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        poke_interval: float = 60.0,
        *,
        newer_than: int | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__()
        self.base_path, self.savedmodel_conn_id, self.storage_options = (
            base_path,
            savedmodel_conn_id,
            storage_options,
        )
        self.poke_interval, self.newer_than, self.signed = poke_interval, newer_than, signed
        self._announced: int | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_savedmodel.triggers.savedmodel.SavedModelNewVersionTrigger",
            {
                "base_path": self.base_path,
                "savedmodel_conn_id": self.savedmodel_conn_id,
                "storage_options": self.storage_options,
                "poke_interval": self.poke_interval,
                "newer_than": self.newer_than,
                "signed": self.signed,
            },
        )

    def shared_stream_key(self) -> Any:
        import json

        options = json.dumps(self.storage_options or {}, sort_keys=True, default=str)
        return (
            "savedmodel-versions",
            self.savedmodel_conn_id or "",
            self.base_path.rstrip("/"),
            options,
            float(self.poke_interval),
            bool(self.signed),
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        async for complete in cls(**kwargs)._complete_versions():
            yield complete

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for complete in shared_stream:
            for event in await self._announce(complete):
                yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for complete in self._complete_versions():
            for event in await self._announce(complete):
                yield event

    async def _complete_versions(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The complete versions, oldest first, at the start and whenever they change."""
        await _imported()
        from airflow_savedmodel import location
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        hook = SavedModelHook(self.savedmodel_conn_id, self.storage_options)
        where: Any = None
        seen: Any = None
        told: Any = None
        failures = 0
        key = _location_key(self.savedmodel_conn_id, self.storage_options, self.base_path)
        poll = shared.poll_for(key)
        while True:
            try:
                if where is None:
                    where = await hook.afilesystem(self.base_path)
                fs, path = where.fs, where.path
                listing = await poll.list(partial(location.alisting, fs, path), _max_age(self.poke_interval))
                if listing != seen:
                    found = (await _versions(poll, fs, path, listing)).versions
                    complete = await poll.check(
                        ("complete", bool(self.signed)),
                        listing,
                        partial(shared.in_thread, _complete, fs, path, self.signed, found),
                    )
                    seen = listing
                    if complete != told:  # a version half written changes the listing, not this
                        told = complete
                        yield complete
                failures = 0
            except Exception as exc:  # a watcher outlives outages: say so and try again later
                failures += 1
                delay = backoff_seconds(failures, self.poke_interval)
                self.log.warning(
                    "Watching %s: storage error %d in a row (%s); next listing in %.0fs",
                    self.base_path,
                    failures,
                    _scrubbed(exc, hook),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            await asyncio.sleep(shared.next_tick(key, self.poke_interval))

    async def _announce(self, complete: list[dict[str, Any]]) -> list[TriggerEvent]:
        last = await self._last_announced(complete)
        events = []
        for version in complete:
            if version["version"] > last:
                events.append(TriggerEvent({"status": "success", **version}))
                last = version["version"]
                self.log.info("New complete version %s at %s", version["version"], version["uri"])
        if last != self._announced:
            self._announced = last
            await self._remember(last)
        return events

    async def _last_announced(self, complete: list[dict[str, Any]]) -> int:
        if self._announced is not None:
            return self._announced
        stored = await self._recall()
        if stored is not None:
            self._announced = int(stored)
        elif self.newer_than is not None:
            self._announced = int(self.newer_than)
        else:  # first start: what exists now is not news
            self._announced = max((v["version"] for v in complete), default=0)
            await self._remember(self._announced)
        self.log.info(
            "Watching %s every %ss: announcing complete versions above %s",
            self.base_path,
            self.poke_interval,
            self._announced,
        )
        return self._announced

    async def _recall(self) -> Any:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            return await store.aget(ANNOUNCED_KEY)
        except Exception as exc:  # more than one watched asset, an older Airflow: keep it in memory
            self.log.info("No asset state for %s (%s); remembering in memory", self.base_path, exc)
            return None

    async def _remember(self, version: int) -> None:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return
        try:
            await store.aset(ANNOUNCED_KEY, int(version))
        except Exception as exc:
            self.log.info("Could not record version %s for %s (%s)", version, self.base_path, exc)


async def _imported(modules: tuple[str, ...] | None = None) -> None:
    """Import what a trigger needs in a thread, not on the triggerer's event loop (a first import
    of the storage layer, or of aiohttp, takes longer than the 0.2 s Airflow allows a trigger to
    block it)."""
    import importlib

    def load() -> None:
        for name in _POLLING_MODULES if modules is None else modules:
            importlib.import_module(name)

    await asyncio.to_thread(load)


_POLLING_MODULES = (
    "airflow_savedmodel.hooks.savedmodel",
    "airflow_savedmodel.location",
    "airflow_savedmodel.storage.transfer",
    "airflow_savedmodel.storage.versions",
    "airflow_savedmodel.storage.catalog",
    "airflow_savedmodel.storage.manifest",
)

_SERVED_MODULES = (
    "aiohttp",
    "airflow_savedmodel.release.fleet",
    "asgiref.sync",
    "airflow_savedmodel.hooks.tfserving",
    "airflow_savedmodel.tfserving",
)


async def _versions(poll: shared.SharedPoll, fs: Any, path: str, listing: Any) -> Any:
    """Every version's state under ``path``, told once per listing for every trigger of the
    location, from their shared ``listing`` and the telling before it (read only: the catalog is
    the publishers' to write)."""
    from airflow_savedmodel.storage.versions import told_from

    before = poll.last(("versions",))
    return await poll.check(
        ("versions",), listing, partial(shared.in_thread, told_from, fs, path, listing, before)
    )


def _complete(fs: Any, path: str, signed: bool, told: Any) -> list[dict[str, Any]]:
    """Complete versions among ``told`` (with ``signed``: those with model.sig), oldest first."""
    from airflow_savedmodel import location
    from airflow_savedmodel.storage import manifest as manifests
    from airflow_savedmodel.storage.versions import COMPLETE

    found = []
    for info in told:
        if info.state != COMPLETE:
            continue
        if signed and not fs.exists(location.join(path, str(info.version), manifests.SIGNATURE_PATH)):
            continue
        fingerprint = info.manifest.fingerprint if info.manifest is not None else None
        found.append({"version": info.version, "uri": info.url, "fingerprint": fingerprint})
    return found


def _scrubbed(exc: BaseException, hook: Any) -> str:
    from airflow_savedmodel import location

    return location.scrub(f"{type(exc).__name__}: {exc}", hook.secrets())
