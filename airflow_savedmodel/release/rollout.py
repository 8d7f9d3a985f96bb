"""A rollout that decides by evidence: canary, wait until served, bake, promote or roll back.

The steps are separate so Airflow can wait between them without holding a worker
(:func:`begin` in the worker, the wait in the triggerer, :func:`bake` and :func:`decide` in the
worker again); :func:`rollout` runs them in one process for the command line.

1. :func:`begin`: TF Serving must answer (retried with backoff; if it never does, nothing
   changed); the model's rollout claim is taken (a second rollout of the model is refused with the
   first's run named; one whose deadline passed was abandoned and is rolled back first; the same
   run retrying resumes); the candidate is named in the model config (which names only complete
   versions); the release record says ``baking``.
2. Wait until TF Serving reports the candidate AVAILABLE, or refuses it (its error is the reason
   for the rollback), or the policy's ``available_timeout_seconds`` pass; then point ``canary``
   at it (TF Serving refuses a label on a version it has not loaded) and wait until TF Serving
   serves it under that label.
3. :func:`bake`: the same requests to ``canary`` and ``stable``, interleaved (which label goes
   first alternates), warm-up requests left out, for ``bake_seconds`` and at least
   ``min_requests``.
4. :func:`decide`: every check passes -> ``stable`` := the candidate; any fails -> the candidate
   withdrawn (``canary`` removed, the version unlisted, ``stable`` untouched). The record gets the
   decision, each check with its figure and threshold, the metrics and the approval.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel.errors import (  # the rollout's errors, importable from here as before
    RolloutBusyError,
    RolloutError,
    SavedModelError,
    ServerUnreachableError,
    ServingError,
)
from airflow_savedmodel.location import Location
from airflow_savedmodel.release import evidence, records
from airflow_savedmodel.release.evidence import FAIL, Check, Sample
from airflow_savedmodel.release.policy import Policy
from airflow_savedmodel.release.traffic import Answer, Request, send
from airflow_savedmodel.signing.keys import Trust
from airflow_savedmodel.storage import model_config, signed
from airflow_savedmodel.tfserving import Endpoint

CANARY, STABLE = "canary", "stable"
REACH_ATTEMPTS = 3  # a server restarting answers within these; none listening fails in seconds


@dataclass(frozen=True)
class Target:
    """The model being released: its config file, name and base path (resolved, with credentials)."""

    config: Location
    model: str
    base: Location
    trust: Trust | None = None  # signatures required: the candidate must verify to be named or promoted


def target_for(
    config: Location, model_name: str, resolve: Callable[[str], Location], trust: Trust | None = None
) -> Target:
    """The model ``model_name`` of the config file at ``config``, its base path resolved by
    ``resolve`` (with the caller's credentials); NotFoundError when the config does not name it."""
    from airflow_savedmodel.errors import NotFoundError

    model = model_config.find(model_config.read(config, missing_ok=False), model_name)
    if model is None:
        raise NotFoundError(f"no model named {model_name!r} in the serving config", config.url)
    return Target(config, model_name, resolve(model.base_path), trust)


@dataclass(frozen=True)
class Plan:
    """What one rollout task works from, read once and passed to every step: the target (its
    config read, the signers resolved) and the parsed policy."""

    target: Target
    policy: Policy


@dataclass(frozen=True)
class InFlight:
    """A rollout between its steps: its claim and the ``stable`` version it started from."""

    active: records.Active
    stable: int | None


@dataclass
class Result:
    decision: str  # promoted, rolled_back, awaiting_approval, unchanged
    version: int
    stable_before: int | None
    stable_after: int | None
    checks: list[Check] = field(default_factory=list)
    record_url: str = ""
    message: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "version": self.version,
            "stable_before": self.stable_before,
            "stable_after": self.stable_after,
            "checks": [c.to_json() for c in self.checks],
            "record": self.record_url,
            "message": self.message,
        }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _reachable(endpoint: Endpoint, model: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """TF Serving answers at all (any HTTP status): retried with backoff, else RolloutError."""
    delay, last = 1.0, ""
    for attempt in range(REACH_ATTEMPTS):
        try:
            endpoint.open(endpoint.model_url(model))
            return
        except OSError as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < REACH_ATTEMPTS - 1:
            sleep(delay)
            delay = min(delay * 2, 30.0)
    raise ServerUnreachableError(
        f"TF Serving does not answer after {REACH_ATTEMPTS} attempts ({last}): a rollout needs a running "
        "TF Serving at this address; nothing was changed",
        endpoint.display,
    )


def labels_of(target: Target) -> dict[str, int]:
    model = model_config.find(model_config.read(target.config), target.model)
    if model is None:
        raise RolloutError(f"no model named {target.model!r} in the serving config", target.config.url)
    return model_config.describe(model).labels


def _abandon(target: Target, holder: records.Active) -> None:
    """Roll back a rollout whose run stopped before deciding (its deadline passed)."""
    if labels_of(target).get(STABLE) != holder.version:
        model_config.withdraw(target.config, target.model, holder.version)
    record = records.read(target.base, holder.version) or {"version": holder.version}
    if record.get("state") in (None, "baking"):
        record.update(
            state="rolled_back",
            decided=_now(),
            message=f"abandoned: run {holder.run_id} did not decide before its deadline; rolled back",
        )
        records.write(target.base, record)
    records.give_up(target.base, holder)


def unchanged(target: Target, version: int) -> Result | None:
    """The result for a candidate that is already ``stable`` (a rerun whose export was recognised
    as the version already published): nothing to release. None otherwise."""
    if labels_of(target).get(STABLE) != version:
        return None
    return Result(
        "unchanged",
        version,
        version,
        version,
        [],
        "",
        f"version {version} is already {STABLE}: nothing to release",
    )


def begin(
    target: Target,
    version: int,
    endpoint: Endpoint,
    policy: Policy,
    *,
    run_id: str,
    metrics: Mapping[str, float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[records.Active, int | None]:
    """Step 1: claim the rollout, name ``version`` in the config; (claim, stable before). A
    candidate that does not verify under the target's trust is refused before anything changes;
    a rollout refused before its claim (not by another run's) leaves its reason in the record."""
    try:
        signed.require(target.base.join(str(version)), target.trust)
        _reachable(endpoint, target.model, sleep)
    except SavedModelError as exc:
        refused(target, version, run_id, str(exc))
        raise
    stable = labels_of(target).get(STABLE)
    if stable == version:
        raise RolloutError(f"version {version} is already {STABLE}", target.config.url)
    seconds = (
        float(policy["available_timeout_seconds"])
        + float(policy["bake_seconds"])
        + float(policy["abandoned_after_seconds"])
    )
    active = records.take(target.base, run_id, version, seconds)
    if active is None:
        holder = records.current(target.base)
        if holder is not None and holder.run_id == run_id and holder.version == version:
            active = holder  # this run's earlier try: resume
        elif holder is not None and holder.expired:
            _abandon(target, holder)
            active = records.take(target.base, run_id, version, seconds)
        elif holder is None and records.orphan_claim(target.base):
            records.clear_orphan(target.base)
            active = records.take(target.base, run_id, version, seconds)
        if active is None:
            who = (
                f"run {holder.run_id} (version {holder.version}, started "
                f"{datetime.datetime.fromtimestamp(holder.started, datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC)"
                if holder is not None
                else "another run"
            )
            raise RolloutBusyError(
                f"model {target.model!r} is being rolled out by {who}; nothing was changed", target.config.url
            )
    try:  # served, not yet labelled: TF Serving refuses a label on a version it has not loaded
        model_config.serve_version(target.config, target.model, target.base, version)
    except SavedModelError as exc:
        records.give_up(target.base, active)
        refused(target, version, run_id, str(exc))
        raise
    records.write(
        target.base,
        {
            "version": version,
            "model": target.model,
            "state": "baking",
            "run_id": run_id,
            "started": _now(),
            "stable_before": stable,
            "policy": policy.doc,
            "metrics": dict(metrics or {}),
            "earlier": records.earlier(target.base, version, run_id),
        },
    )
    return active, stable


def refused(target: Target, version: int, run_id: str, message: str) -> None:
    """Record why a rollout of ``version`` ended before it changed anything (the version's
    earlier outcomes kept beside it), unless another run's rollout of it is in flight. Best
    effort: a store that refused the rollout may refuse the record too, and the rollout's own
    error is what the caller raises."""
    try:
        record = records.read(target.base, version)
        if record is not None and record.get("state") in ("baking", "awaiting_approval"):
            return  # another run's rollout of it is in flight: its record is not this one's to end
        records.write(
            target.base,
            {
                "version": version,
                "model": target.model,
                "state": "failed",
                "run_id": run_id,
                "decided": _now(),
                "message": f"rollout of version {version} failed before it changed anything: {message}",
                "earlier": records.earlier(target.base, version, run_id),
            },
        )
    except (SavedModelError, OSError):
        return


def stopped_before_bake(
    target: Target, active: records.Active, checks: Sequence[Check], *, stable_before: int | None, reason: str
) -> Result:
    """End a rollout that named its candidate but cannot bake (no requests to send, inputs that
    cannot be read): the candidate withdrawn, the record closed with the reason, the claim freed,
    so the next rollout of the model starts at once."""
    return decide(target, active, [*checks, Check("bake", FAIL, reason)], stable_before=stable_before)


def wait_available(endpoint: Endpoint, model: str, version: int, timeout: float, poll: float = 1.0) -> Check:
    """Step 2 in one process: a passing ``available`` check, or a failing one with the reason."""
    from airflow_savedmodel.tfserving import fetch_status

    deadline = time.monotonic() + timeout
    last = "not known to the server yet"
    while True:
        try:
            status = fetch_status(endpoint, model, version)
        except (OSError, ServingError) as exc:
            status, last = None, f"{type(exc).__name__}: {exc}"
        if status is not None:
            check = available_check(status.to_json(), timeout)
            if check is not None:
                return check
            last = status.waiting_for()
        if time.monotonic() >= deadline:
            return Check("available", FAIL, f"not AVAILABLE after {timeout:g} s: {last}", None, timeout)
        time.sleep(poll)


def available_check(status: Mapping[str, Any], timeout: float) -> Check | None:
    """The ``available`` check from a TF Serving status (None: still loading)."""
    from airflow_savedmodel.tfserving import VersionStatus

    found = VersionStatus(**status)
    if found.available:
        return Check("available", "pass", f"version {found.version} AVAILABLE on TF Serving")
    if found.failed:
        return Check(
            "available",
            FAIL,
            f"TF Serving reports version {found.version} {found.state}: {found.error_code}: {found.error_message}",
        )
    return None


def available_from_event(event: Mapping[str, Any], timeout: float) -> Check:
    """The ``available`` check from the event a served trigger fired with: AVAILABLE, refused
    (TF Serving's error), not answered, or still loading when the timeout passed."""
    from airflow_savedmodel.tfserving import VersionStatus

    if event.get("status") == "error":
        return Check("available", FAIL, f"TF Serving could not be asked: {event['message']}")
    if event.get("status") == "timeout":
        last = VersionStatus(**event["served"]).waiting_for() if event.get("served") else "never answered"
        return Check("available", FAIL, f"not AVAILABLE after {timeout:g} s: {last}", None, timeout)
    check = available_check(event["served"], timeout)
    if check is None:  # the trigger fires only once the version is AVAILABLE or failed
        raise RolloutError(f"the served trigger fired while version {event['served']} was still loading")
    return check


def in_flight(target: Target, version: int) -> InFlight:
    """The rollout of ``version`` in flight (its claim and the stable version it started from),
    read back from beside the versions when a task resumes after its wait."""
    active = records.current(target.base)
    record = records.read(target.base, version)
    if active is None or active.version != version or record is None:
        raise RolloutError(f"no rollout of version {version} in flight (its claim is gone)", target.base.url)
    return InFlight(active, record.get("stable_before"))


def label_served(
    endpoint: Endpoint, target: Target, label: str, version: int, *, timeout: float, poll: float = 0.5
) -> Check:
    """Point ``label`` at ``version`` (AVAILABLE by now) and wait until TF Serving resolves the
    label to it: a label move takes effect at TF Serving's next read of the config."""
    from airflow_savedmodel.tfserving import fetch_status

    model_config.set_labels(target.config, target.model, target.base, {label: version})
    deadline = time.monotonic() + timeout
    seen = "not yet"
    while True:
        try:
            status = fetch_status(endpoint, target.model, label=label)
            if status.version == version and status.available:
                return Check(f"label:{label}", "pass", f"TF Serving serves version {version} as {label}")
            seen = f"{label} names {status.version} ({status.state})" if status.state else f"{label} unknown"
        except (OSError, ServingError) as exc:
            seen = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            return Check(
                f"label:{label}",
                FAIL,
                f"TF Serving did not serve version {version} as {label} within {timeout:g} s: {seen}",
            )
        time.sleep(poll)


def bake(
    endpoint: Endpoint,
    model: str,
    requests: Sequence[Request],
    policy: Policy,
    *,
    has_stable: bool,
    clock: Callable[[], float] = time.monotonic,
) -> list[Sample]:
    """Step 3: the same requests to canary and stable, interleaved, for the bake period."""
    if not requests:
        raise RolloutError("no requests to send: the candidate has no warmup file and no inputs were given")
    for i in range(int(policy["warmup_requests"])):
        request = requests[i % len(requests)]
        send(endpoint, model, CANARY, request)
        if has_stable:
            send(endpoint, model, STABLE, request)
    samples: list[Sample] = []
    bake_seconds, need = float(policy["bake_seconds"]), int(policy["min_requests"])
    start = clock()
    i = 0
    while (clock() - start < bake_seconds or i < need) and i < max(need, 1) * 1000:
        request = requests[i % len(requests)]
        stable: Answer | None
        if has_stable and i % 2:
            stable = send(endpoint, model, STABLE, request)
            canary = send(endpoint, model, CANARY, request)
        else:
            canary = send(endpoint, model, CANARY, request)
            stable = send(endpoint, model, STABLE, request) if has_stable else None
        samples.append(Sample(request, canary, stable))
        i += 1
    return samples


def signature_check(target: Target, version: int) -> Check:
    """The candidate verified again just before it is promoted (a bucket writer had the bake to
    change it)."""
    assert target.trust is not None
    found = signed.check(target.base.join(str(version)), target.trust)
    if found.ok:
        return Check("signature", "pass", f"signed by {found.signer}")
    return Check("signature", FAIL, found.error().problem)


def decide(
    target: Target,
    active: records.Active,
    checks: Sequence[Check],
    *,
    stable_before: int | None,
    approval: Mapping[str, Any] | None = None,
) -> Result:
    """Step 4: promote when nothing failed, else withdraw the candidate; record it; end the claim."""
    version = active.version
    checks = list(checks)
    if target.trust is not None and not evidence.failed(checks):
        checks.append(signature_check(target, version))  # what baked is what was signed, still
    failures = evidence.failed(checks)
    if failures:
        model_config.withdraw(target.config, target.model, version)
        decision, stable_after = "rolled_back", stable_before
        first = failures[0]
        message = f"rolled back version {version}: {first.name} failed: {first.message}"
        if len(failures) > 1:
            message += f" (and {len(failures) - 1} more: {', '.join(c.name for c in failures[1:])})"
    else:
        model_config.set_labels(target.config, target.model, target.base, {STABLE: version})
        decision, stable_after = "promoted", version
        skipped = [c.name for c in checks if c.status == "skip"]
        message = f"promoted version {version} to {STABLE}" + (
            f" (skipped: {', '.join(skipped)})" if skipped else ""
        )
    record = records.read(target.base, version) or {"version": version, "model": target.model}
    record.update(
        state=decision,
        decided=_now(),
        stable_before=stable_before,
        stable_after=stable_after,
        checks=[c.to_json() for c in checks],
        approval=dict(approval) if approval else None,
        message=message,
    )
    url = records.write(target.base, record)
    records.give_up(target.base, active)
    return Result(decision, version, stable_before, stable_after, list(checks), url, message)


def baseline_metrics(target: Target, stable: int | None) -> dict[str, float] | None:
    """The metrics recorded when ``stable`` was released (None: none recorded)."""
    if stable is None:
        return None
    record = records.read(target.base, stable)
    found = record.get("metrics") if record else None
    return dict(found) if found else None


def rollout(
    target: Target,
    version: int,
    endpoint: Endpoint,
    policy: Policy,
    requests: Sequence[Request],
    *,
    run_id: str,
    metrics: Mapping[str, float] | None = None,
    poll: float = 1.0,
) -> Result:
    """Every step in this process (the command line): begin, wait, bake, decide."""
    done = unchanged(target, version)
    if done is not None:
        return done
    # Interrupted before deciding, the claim is left to expire (the record says "baking"): the
    # next rollout of this model rolls the candidate back, or this run's retry resumes it.
    active, stable = begin(target, version, endpoint, policy, run_id=run_id, metrics=metrics)
    served = wait_available(endpoint, target.model, version, float(policy["available_timeout_seconds"]), poll)
    return finish(
        target,
        active,
        stable=stable,
        available=served,
        endpoint=endpoint,
        policy=policy,
        requests=requests,
        metrics=metrics,
        poll=poll,
    )


def finish(
    target: Target,
    active: records.Active,
    *,
    stable: int | None,
    available: Check,
    endpoint: Endpoint,
    policy: Policy,
    requests: Sequence[Request],
    metrics: Mapping[str, float] | None = None,
    hold_for_approval: bool = False,
    poll: float = 0.5,
) -> Result:
    """Steps 2 (the label) to 4, once the wait for TF Serving gave ``available``: passing, or
    failing with TF Serving's error or the timeout (then the candidate is withdrawn at once)."""
    if available.status == FAIL:
        return decide(target, active, [available], stable_before=stable)
    if not requests:  # known before any label moves
        reason = "no requests to send: the candidate has no warmup file and no inputs were given"
        return stopped_before_bake(target, active, [available], stable_before=stable, reason=reason)
    timeout = float(policy["available_timeout_seconds"])
    try:
        labelled = label_served(endpoint, target, CANARY, active.version, timeout=timeout, poll=poll)
        if labelled.status == FAIL:
            return decide(target, active, [available, labelled], stable_before=stable)
        samples = bake(endpoint, target.model, requests, policy, has_stable=stable is not None)
    except SavedModelError as exc:  # e.g. a signature that no longer verifies when canary moves
        return stopped_before_bake(target, active, [available], stable_before=stable, reason=str(exc))
    checks = [
        available,
        labelled,
        *evidence.judge(
            policy,
            samples,
            has_stable=stable is not None,
            metrics=metrics,
            baseline_metrics=baseline_metrics(target, stable),
        ),
    ]
    if hold_for_approval and not evidence.failed(checks):
        return hold(target, active, checks, stable_before=stable)
    return decide(target, active, checks, stable_before=stable)


def hold(
    target: Target, active: records.Active, checks: Sequence[Check], *, stable_before: int | None
) -> Result:
    """Passing evidence waits for a person: the record says ``awaiting_approval``, ``canary``
    keeps serving the candidate and the claim is kept until :func:`conclude`."""
    record = records.read(target.base, active.version) or {"version": active.version, "model": target.model}
    message = f"version {active.version} passed every check; awaiting approval to promote it to {STABLE}"
    record.update(state="awaiting_approval", checks=[c.to_json() for c in checks], message=message)
    url = records.write(target.base, record)
    return Result(
        "awaiting_approval", active.version, stable_before, stable_before, list(checks), url, message
    )


def conclude(target: Target, version: int, *, approved: bool, approval: Mapping[str, Any]) -> Result:
    """A person's answer on a held rollout: promote when approved, else roll back; the answer
    (who, when, what) is part of the record."""
    active = records.current(target.base)
    record = records.read(target.base, version)
    if (
        active is None
        or active.version != version
        or record is None
        or record.get("state") != "awaiting_approval"
    ):
        state = record.get("state") if record else "no record"
        raise RolloutError(f"version {version} is not awaiting approval ({state})", target.base.url)
    checks = [Check(**c) for c in record.get("checks") or []]
    who = approval.get("by") or "someone"
    checks.append(
        Check("approval", "pass", f"approved by {who}")
        if approved
        else Check("approval", FAIL, str(approval.get("reason") or f"rejected by {who}"))
    )
    return decide(target, active, checks, stable_before=record.get("stable_before"), approval=approval)
