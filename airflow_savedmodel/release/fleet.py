"""What a fleet of TF Serving replicas says, and when a rollout may go on: pure verdicts over
each replica's answer, and the blocking waits built on them.

Every replica polls the model config on its own and loads a version at its own pace, so one
answer through a balancer says nothing about the others. A rollout asks each replica (the
fleet's replicas resolved again at every poll) and goes on only when all of them are ready:
the candidate AVAILABLE, a moved label resolved to it. A replica that ends the load in an error
fails the wait at once, named with TF Serving's error; one that trails the first ready replica
by more than ``replicas.max_lag_seconds`` fails it too, named with what it said last.

Statuses are plain data, ``{replica: VersionStatus.to_json() | "why it did not answer"}``, so
a trigger on the triggerer's loop and a worker decide alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_savedmodel.errors import ServingError
from airflow_savedmodel.release.evidence import FAIL, PASS, Check
from airflow_savedmodel.tfserving import Endpoint, Fleet, VersionStatus, fetch_status

Statuses = dict[str, Any]  # replica (host:port) -> VersionStatus.to_json(), or why it did not answer


def statuses(fleet: Fleet, model: str, version: int | None = None, label: str | None = None) -> Statuses:
    """Each replica's answer for ``version`` (or the version ``label`` names), asked now."""
    try:
        replicas = fleet.replicas()
    except ServingError as exc:
        return {fleet.display: f"{type(exc).__name__}: {exc.problem}"}
    return {replica.replica: ask(replica, model, version, label) for replica in replicas}


def ask(replica: Endpoint, model: str, version: int | None = None, label: str | None = None) -> Any:
    """One replica's status as JSON, or why it did not answer."""
    try:
        return fetch_status(replica, model, version, label).to_json()
    except (OSError, ServingError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def _status(value: Any) -> VersionStatus | None:
    return VersionStatus(**value) if isinstance(value, dict) else None


def ready(value: Any, version: int) -> bool:
    found = _status(value)
    return found is not None and found.available and found.version == version


def waiting_text(value: Any) -> str:
    found = _status(value)
    return found.waiting_for() if found is not None else str(value)


def progress(found: Statuses, version: int, what: str = "AVAILABLE") -> str:
    """How far the fleet is: "version 7 is LOADING" for one replica; for several, "2 of 3
    replicas ...; waiting for 10.0.0.3:8501 (version 7 is LOADING)"."""
    if len(found) == 1:
        return waiting_text(next(iter(found.values())))
    behind = {r: v for r, v in found.items() if not ready(v, version)}
    text = f"{len(found) - len(behind)} of {len(found)} replicas {what}"
    if behind:
        text += "; waiting for " + ", ".join(f"{r} ({waiting_text(v)})" for r, v in sorted(behind.items()))
    return text


def available_verdict(found: Statuses, version: int) -> Check | None:
    """The ``available`` check once the fleet has settled ``version``: every replica AVAILABLE,
    or one that ended its load in an error (named, with TF Serving's error). None: still
    loading somewhere."""
    failed = [(r, s) for r, v in sorted(found.items()) if (s := _status(v)) is not None and s.failed]
    if failed:
        replica, status = failed[0]
        where = "TF Serving" if len(found) == 1 else f"replica {replica}"
        more = f" (and {len(failed) - 1} more replicas)" if len(failed) > 1 else ""
        return Check(
            "available",
            FAIL,
            f"{where} reports version {status.version} {status.state}: {status.error_code}: "
            f"{status.error_message}{more}",
        )
    if found and all(ready(v, version) for v in found.values()):
        if len(found) == 1:
            return Check("available", PASS, f"version {version} AVAILABLE on TF Serving")
        return Check(
            "available",
            PASS,
            f"version {version} AVAILABLE on all {len(found)} replicas",
            len(found),
            len(found),
        )
    return None


def late_verdict(
    name: str, found: Statuses, version: int, *, waited: float, limit: float, lag: bool, what: str
) -> Check:
    """A failing check for a fleet still behind: past the overall timeout, or (``lag``) a replica
    trailing the first ready one by more than ``limit`` seconds."""
    why = (
        f"a replica trailed the first by more than {limit:g} s (replicas.max_lag_seconds)"
        if lag
        else f"not {what} after {limit:g} s"
    )
    if len(found) == 1 and not lag:
        return Check(name, FAIL, f"{why}: {progress(found, version, what)}", None, limit)
    return Check(name, FAIL, f"{why}: {progress(found, version, what)}", waited, limit)


class Waiter:
    """The clock of one fleet-wide wait: the overall timeout, and the lag allowed once the first
    replica is ready. ``verdict`` is None while the wait goes on."""

    def __init__(
        self, timeout: float, max_lag: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.start = clock()
        self.timeout, self.max_lag = timeout, max_lag
        self.first_ready: float | None = None

    def late(self, name: str, found: Statuses, version: int, what: str) -> Check | None:
        now = self.clock()
        if self.first_ready is None and any(ready(v, version) for v in found.values()):
            self.first_ready = now
        if (
            self.max_lag is not None
            and self.first_ready is not None
            and now - self.first_ready >= self.max_lag
        ):
            return late_verdict(
                name, found, version, waited=now - self.start, limit=self.max_lag, lag=True, what=what
            )
        if now - self.start >= self.timeout:
            return late_verdict(
                name, found, version, waited=now - self.start, limit=self.timeout, lag=False, what=what
            )
        return None


def wait_available(
    fleet: Fleet,
    model: str,
    version: int,
    timeout: float,
    poll: float = 1.0,
    *,
    max_lag: float | None = None,
) -> Check:
    """Wait in this process until every replica has ``version`` AVAILABLE (or one failed it)."""
    waiter = Waiter(timeout, max_lag)
    while True:
        found = statuses(fleet, model, version)
        check = available_verdict(found, version)
        if check is not None:
            return check
        late = waiter.late("available", found, version, "AVAILABLE")
        if late is not None:
            return late
        time.sleep(poll)


def wait_label(
    fleet: Fleet,
    model: str,
    label: str,
    version: int,
    timeout: float,
    *,
    poll: float = 0.5,
    max_lag: float | None = None,
) -> Check:
    """Wait until every replica resolves ``label`` to ``version`` (a label move takes effect at
    each replica's next read of the config; one that refuses the reload keeps its old labels)."""
    waiter = Waiter(timeout, max_lag)
    name = f"label:{label}"
    while True:
        found = statuses(fleet, model, label=label)
        if found and all(ready(v, version) for v in found.values()):
            where = "TF Serving serves" if len(found) == 1 else f"all {len(found)} replicas serve"
            return Check(name, PASS, f"{where} version {version} as {label}")
        late = waiter.late(name, found, version, f"serve version {version} as {label}")
        if late is not None:
            if len(found) == 1 and late.observed is None:
                return Check(
                    name,
                    FAIL,
                    f"TF Serving did not serve version {version} as {label} within {timeout:g} s: "
                    f"{_label_text(next(iter(found.values())), label)}",
                )
            return late
        time.sleep(poll)


def _label_text(value: Any, label: str) -> str:
    found = _status(value)
    if found is None:
        return str(value)
    return f"{label} names {found.version} ({found.state})" if found.state else f"{label} unknown"


def wait_withdrawn(
    fleet: Fleet, model: str, version: int, labels: tuple[str, ...], timeout: float, *, poll: float = 0.5
) -> list[str]:
    """Wait until no replica serves ``version`` under any of ``labels``; the replicas that still
    did when ``timeout`` passed (a replica that does not answer serves nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        still = sorted(
            f"{replica} ({label})"
            for label in labels
            for replica, value in statuses(fleet, model, label=label).items()
            if ready(value, version)
        )
        if not still or time.monotonic() >= deadline:
            return still
        time.sleep(poll)


def event_check(event: Mapping[str, Any], version: int, timeout: float) -> Check:
    """The ``available`` check from a served trigger's event (see SavedModelServedTrigger)."""
    found: Statuses = dict(event.get("replicas") or {})
    if not found and event.get("served"):  # an event of one server, as triggers fired before replicas
        found = {"TF Serving": event["served"]}
    if event.get("status") == "error":
        return Check("available", FAIL, f"TF Serving could not be asked: {event['message']}")
    if event.get("status") in ("timeout", "lagging"):
        lag = event["status"] == "lagging"
        limit = float(event.get("limit") or timeout)
        if not found:
            return Check("available", FAIL, f"not AVAILABLE after {limit:g} s: never answered", None, limit)
        return late_verdict(
            "available",
            found,
            version,
            waited=float(event.get("waited") or limit),
            limit=limit,
            lag=lag,
            what="AVAILABLE",
        )
    check = available_verdict(found, version)
    if check is None:
        raise ServingError(
            f"the served trigger fired while the fleet was still loading: {progress(found, version)}"
        )
    return check
