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

import dataclasses
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
from airflow_savedmodel.release import fleet as fleet_waits
from airflow_savedmodel.release.evidence import FAIL, PASS, Check, Sample
from airflow_savedmodel.release.policy import Policy
from airflow_savedmodel.release.traffic import Answer, Request, send
from airflow_savedmodel.signing.keys import Trust
from airflow_savedmodel.storage import model_config, signed
from airflow_savedmodel.tfserving import Endpoint, Fleet
from airflow_savedmodel.tfserving import fleet as as_fleet

Server = Endpoint | Fleet  # one TF Serving, or the replicas of one

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


def _reachable(server: Server, model: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """Every replica answers at all (any HTTP status): retried with backoff, else
    ServerUnreachableError naming the silent ones."""
    fleet = as_fleet(server)
    delay = 1.0
    silent: dict[str, str] = {}
    for attempt in range(REACH_ATTEMPTS):
        silent = {}
        try:
            replicas = fleet.replicas()
        except ServingError as exc:
            silent[fleet.display] = exc.problem
            replicas = []
        for replica in replicas:
            try:
                replica.open(replica.model_url(model))
            except OSError as exc:
                silent[replica.replica] = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if not silent:
            return
        if attempt < REACH_ATTEMPTS - 1:
            sleep(delay)
            delay = min(delay * 2, 30.0)
    if len(replicas) <= 1 and len(silent) == 1:
        raise ServerUnreachableError(
            f"TF Serving does not answer after {REACH_ATTEMPTS} attempts ({next(iter(silent.values()))}): a "
            "rollout needs a running TF Serving at this address; nothing was changed",
            fleet.display,
        )
    which = "; ".join(f"{name}: {why}" for name, why in sorted(silent.items()))
    raise ServerUnreachableError(
        f"{len(silent)} of {len(replicas)} TF Serving replicas do not answer after {REACH_ATTEMPTS} attempts "
        f"({which}): a rollout needs every replica answering; nothing was changed",
        fleet.display,
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
    endpoint: Server,
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
    seconds = (  # the waits, the bake, the label moves (each up to the replicas' lag), then a margin
        float(policy["available_timeout_seconds"])
        + float(policy["bake_seconds"])
        + 3 * float(policy["replicas"]["max_lag_seconds"])
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


def wait_available(
    endpoint: Server,
    model: str,
    version: int,
    timeout: float,
    poll: float = 1.0,
    *,
    max_lag: float | None = None,
) -> Check:
    """Step 2 in one process: a passing ``available`` check once every replica has the version
    AVAILABLE, or a failing one with the reason (release.fleet.wait_available)."""
    return fleet_waits.wait_available(as_fleet(endpoint), model, version, timeout, poll, max_lag=max_lag)


def available_from_event(event: Mapping[str, Any], timeout: float, version: int | None = None) -> Check:
    """The ``available`` check from the event a served trigger fired with: every replica
    AVAILABLE, one refused (TF Serving's error), not asked, lagging, or the timeout passed."""
    if version is None:
        version = int(event.get("version") or (event.get("served") or {}).get("version") or 0)
    try:
        return fleet_waits.event_check(event, version, timeout)
    except ServingError as exc:
        raise RolloutError(exc.problem) from None


def in_flight(target: Target, version: int) -> InFlight:
    """The rollout of ``version`` in flight (its claim and the stable version it started from),
    read back from beside the versions when a task resumes after its wait."""
    active = records.current(target.base)
    record = records.read(target.base, version)
    if active is None or active.version != version or record is None:
        raise RolloutError(f"no rollout of version {version} in flight (its claim is gone)", target.base.url)
    return InFlight(active, record.get("stable_before"))


def label_served(
    endpoint: Server,
    target: Target,
    label: str,
    version: int,
    *,
    timeout: float,
    poll: float = 0.5,
    max_lag: float | None = None,
) -> Check:
    """Point ``label`` at ``version`` (AVAILABLE on every replica by now) and wait until every
    replica resolves the label to it: a label move takes effect at each one's next config read."""
    model_config.set_labels(target.config, target.model, target.base, {label: version})
    return fleet_waits.wait_label(
        as_fleet(endpoint), target.model, label, version, timeout, poll=poll, max_lag=max_lag
    )


@dataclass
class Bake:
    """What a bake saw: the samples (each tagged with its replica) and how the fleet changed."""

    samples: list[Sample]
    joined: list[str] = field(default_factory=list)  # replicas admitted after the bake began
    left: list[str] = field(default_factory=list)  # replicas gone from the fleet during it
    late: dict[str, str] = field(default_factory=dict)  # joined, never served the canary: why

    def checks(self) -> list[Check]:
        """The fleet's changes as checks: a replica that joined and never served the candidate
        as canary fails; one that left is noted (its answers stay in the overall figures)."""
        out = []
        if self.late:
            detail = "; ".join(f"{r} ({why})" for r, why in sorted(self.late.items()))
            out.append(
                Check(
                    "fleet",
                    FAIL,
                    f"replicas joined during the bake and never served the candidate as {CANARY}: {detail}",
                )
            )
        elif self.joined or self.left:
            said = []
            if self.joined:
                said.append(f"joined and served the candidate: {', '.join(self.joined)}")
            if self.left:
                said.append(f"left the fleet (their answers count overall): {', '.join(self.left)}")
            out.append(Check("fleet", PASS, "the fleet changed during the bake: " + "; ".join(said)))
        return out


def bake(
    endpoint: Server,
    model: str,
    requests: Sequence[Request],
    policy: Policy,
    *,
    has_stable: bool,
    version: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Bake:
    """Step 3: the same requests to canary and stable on each replica, interleaved (which label
    goes first alternates), for the bake period and until every replica answered
    ``min_requests``. Replicas are resolved again during the bake: one that appears is sent
    requests once it serves ``version`` as canary (within ``replicas.max_lag_seconds``), one
    that disappears is no longer asked."""
    if not requests:
        raise RolloutError("no requests to send: the candidate has no warmup file and no inputs were given")
    fleet = as_fleet(endpoint)
    bake_seconds, need = float(policy["bake_seconds"]), int(policy["min_requests"])
    max_lag = float(policy["replicas"]["max_lag_seconds"])
    seen = Bake([])
    admitted: dict[str, Endpoint] = {}
    pending: dict[str, float] = {}  # replica -> when it appeared
    counts: dict[str, int] = {}

    def admit(replica: Endpoint) -> None:
        admitted[replica.replica] = replica
        counts.setdefault(replica.replica, 0)
        for i in range(int(policy["warmup_requests"])):
            request = requests[i % len(requests)]
            send(replica, model, CANARY, request)
            if has_stable:
                send(replica, model, STABLE, request)

    for replica in fleet.replicas():
        admit(replica)
    tagged = fleet.discovered or len(fleet.servers) > 1  # samples name their replica
    start, last_resolved, i = clock(), clock(), 0
    while i < max(need, 1) * 1000 * max(len(admitted), 1):
        if fleet.discovered and clock() - last_resolved >= 0.5:  # the fleet as DNS says now
            last_resolved = clock()
            try:
                current = {r.replica: r for r in fleet.replicas()}
            except ServingError:
                current = dict(admitted)  # a resolver hiccup: keep asking the replicas we know
            for name in [n for n in admitted if n not in current]:
                del admitted[name]
                seen.left.append(name)
                seen.samples = [  # its answers count overall; it is no longer judged on its own
                    dataclasses.replace(s, replica="") if s.replica == name else s for s in seen.samples
                ]
            for name, replica in current.items():
                if name in admitted or name in seen.left:
                    continue
                pending.setdefault(name, clock())
                status = fleet_waits.ask(replica, model, label=CANARY)
                if version is None or fleet_waits.ready(status, version):
                    pending.pop(name)
                    seen.joined.append(name)
                    admit(replica)
                elif clock() - pending[name] >= max_lag:
                    seen.late[name] = fleet_waits.waiting_text(status)
        done = clock() - start >= bake_seconds and all(counts[n] >= need for n in admitted)
        if done and not [n for n in pending if n not in seen.late]:
            break
        request = requests[i % len(requests)]
        for name, replica in list(admitted.items()):
            stable: Answer | None
            if has_stable and i % 2:
                stable = send(replica, model, STABLE, request)
                canary = send(replica, model, CANARY, request)
            else:
                canary = send(replica, model, CANARY, request)
                stable = send(replica, model, STABLE, request) if has_stable else None
            seen.samples.append(Sample(request, canary, stable, name if tagged else "", clock() - start))
            counts[name] += 1
        i += 1
        if not admitted:
            break
    return seen


def signature_check(target: Target, version: int) -> Check:
    """The candidate verified again just before it is promoted (a bucket writer had the bake to
    change it)."""
    assert target.trust is not None
    found = signed.check(target.base.join(str(version)), target.trust)
    if found.ok:
        return Check("signature", "pass", f"signed by {found.signer}")
    return Check("signature", FAIL, found.error().problem)


@dataclass(frozen=True)
class Settle:
    """How a decision waits for the fleet: every replica serving the promoted version as
    ``stable``, or none serving a rolled-back candidate under any label, each replica within
    ``max_lag`` seconds."""

    fleet: Fleet
    max_lag: float
    poll: float = 0.5


def decide(
    target: Target,
    active: records.Active,
    checks: Sequence[Check],
    *,
    stable_before: int | None,
    approval: Mapping[str, Any] | None = None,
    settle: Settle | None = None,
) -> Result:
    """Step 4: promote when nothing failed, else withdraw the candidate; with ``settle``, wait
    until the fleet follows (a promotion no replica can take is rolled back, ``stable`` moved
    back); record it; end the claim."""
    version = active.version
    checks = list(checks)
    if target.trust is not None and not evidence.failed(checks):
        checks.append(signature_check(target, version))  # what baked is what was signed, still
    note = ""
    if not evidence.failed(checks):
        model_config.set_labels(target.config, target.model, target.base, {STABLE: version})
        if settle is not None:
            served = fleet_waits.wait_label(
                settle.fleet, target.model, STABLE, version, settle.max_lag, poll=settle.poll
            )
            if served.status == FAIL:
                checks.append(served)
                _restore_stable(target, version, stable_before)
    failures = evidence.failed(checks)
    if failures:
        model_config.withdraw(target.config, target.model, version)
        decision, stable_after = "rolled_back", stable_before
        first = failures[0]
        message = f"rolled back version {version}: {first.name} failed: {first.message}"
        if len(failures) > 1:
            message += f" (and {len(failures) - 1} more: {', '.join(c.name for c in failures[1:])})"
        if settle is not None:
            still = fleet_waits.wait_withdrawn(
                settle.fleet, target.model, version, (CANARY, STABLE), settle.max_lag, poll=settle.poll
            )
            if still:
                note = f"after {settle.max_lag:g} s these replicas still served it: {', '.join(still)}"
                message += f"; {note}"
    else:
        decision, stable_after = "promoted", version
        skipped = [c.name for c in checks if c.status == "skip" and c.replica is None]
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


def _restore_stable(target: Target, version: int, stable_before: int | None) -> None:
    """Point ``stable`` back where it was before a promotion of ``version`` the fleet did not take."""
    if stable_before is not None:
        model_config.set_labels(target.config, target.model, target.base, {STABLE: stable_before})
    else:
        model_config.withdraw(target.config, target.model, version, label=STABLE)


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
    endpoint: Server,
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
    served = wait_available(
        endpoint,
        target.model,
        version,
        float(policy["available_timeout_seconds"]),
        poll,
        max_lag=float(policy["replicas"]["max_lag_seconds"]),
    )
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
    endpoint: Server,
    policy: Policy,
    requests: Sequence[Request],
    metrics: Mapping[str, float] | None = None,
    hold_for_approval: bool = False,
    poll: float = 0.5,
) -> Result:
    """Steps 2 (the label) to 4, once the wait for TF Serving gave ``available``: passing, or
    failing with TF Serving's error or the timeout (then the candidate is withdrawn at once)."""
    after = Settle(as_fleet(endpoint), float(policy["replicas"]["max_lag_seconds"]), poll)
    if available.status == FAIL:
        return decide(target, active, [available], stable_before=stable, settle=after)
    if not requests:  # known before any label moves
        reason = "no requests to send: the candidate has no warmup file and no inputs were given"
        return stopped_before_bake(target, active, [available], stable_before=stable, reason=reason)
    timeout = float(policy["available_timeout_seconds"])
    try:
        labelled = label_served(
            endpoint, target, CANARY, active.version, timeout=timeout, poll=poll, max_lag=after.max_lag
        )
        if labelled.status == FAIL:
            return decide(target, active, [available, labelled], stable_before=stable, settle=after)
        baked = bake(
            endpoint, target.model, requests, policy, has_stable=stable is not None, version=active.version
        )
    except SavedModelError as exc:  # e.g. a signature that no longer verifies when canary moves
        return stopped_before_bake(target, active, [available], stable_before=stable, reason=str(exc))
    checks = [
        available,
        labelled,
        *baked.checks(),
        *evidence.judge(
            policy,
            baked.samples,
            has_stable=stable is not None,
            metrics=metrics,
            baseline_metrics=baseline_metrics(target, stable),
        ),
    ]
    _record_bake(target, active.version, evidence.series(policy, baked.samples))
    if hold_for_approval and not evidence.failed(checks):
        return hold(target, active, checks, stable_before=stable)
    return decide(target, active, checks, stable_before=stable, settle=after)


def _record_bake(target: Target, version: int, bake_series: Mapping[str, Any]) -> None:
    """Keep what the bake saw, request by request, in the release record (the Models view
    plots it); best effort: a record that cannot be written loses only the plot."""
    try:
        records.write_bake(target.base, version, dict(bake_series))
    except (SavedModelError, OSError):
        return


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


def conclude(
    target: Target,
    version: int,
    *,
    approved: bool,
    approval: Mapping[str, Any],
    settle: Settle | None = None,
) -> Result:
    """A person's answer on a held rollout: promote when approved, else roll back; the answer
    (who, when, what) is part of the record. With ``settle`` (the fleet, and the lag its policy
    allowed), the decision waits for every replica as a rollout's own does."""
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
    return decide(
        target, active, checks, stable_before=record.get("stable_before"), approval=approval, settle=settle
    )
