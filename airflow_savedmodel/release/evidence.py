"""Judging a canary: the policy's checks over what the bake observed, as pure functions.

A bake yields samples: the same request answered by the canary and (when there is one) by
``stable``, each timed. :func:`judge` turns them, and the training step's metrics, into checks,
each passing, failing or skipped with the figure observed and the threshold it was held to, so
a rollback's message says which check, what was seen, and what was allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_savedmodel.release.policy import Policy
from airflow_savedmodel.release.traffic import Answer, Request

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Sample:
    request: Request
    canary: Answer
    stable: Answer | None
    replica: str = ""  # the TF Serving replica that answered both (host:port)
    at: float = 0.0  # seconds into the bake when it was sent


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, skip
    message: str
    observed: float | None = None
    threshold: float | None = None
    replica: str | None = None  # a check of one replica's answers (``replica:<host:port>:<check>``)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "status": self.status,
            "observed": self.observed,
            "threshold": self.threshold,
            "message": self.message,
        }
        if self.replica is not None:
            doc["replica"] = self.replica
        return doc


def outputs_of(answer: Answer, keys: Sequence[str] = ()) -> dict[str, Any]:
    """An answer's outputs by name (a lone unnamed output takes the signature's one output key
    from ``keys``, else ``output``); classify results become ``scores`` and ``top`` (the label
    of the highest score)."""
    doc = answer.doc
    lone = keys[0] if len(keys) == 1 else "output"
    if "results" in doc:
        results = doc["results"]
        if results and isinstance(results[0], list):  # classify: [[[label, score], ...], ...]
            scores = np.array([[float(pair[1]) for pair in row] for row in results], dtype=np.float64)
            top = [max(row, key=lambda pair: float(pair[1]))[0] if row else None for row in results]
            return {"scores": scores, "top": top}
        return {"outputs": np.array(results, dtype=np.float64)}
    value = doc.get("outputs", doc.get("predictions"))
    if "predictions" in doc and isinstance(value, list) and value and isinstance(value[0], dict):
        return {key: _array([row[key] for row in value]) for key in value[0]}
    if isinstance(value, dict):
        return {key: _array(v) for key, v in value.items()}
    return {lone: _array(value)}


def _array(value: Any) -> Any:
    try:
        array = np.array(value)
    except ValueError:  # ragged
        return value
    return array if array.dtype.kind in "fiub" else value


def _finite(outputs: Mapping[str, Any]) -> bool:
    for value in outputs.values():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            return False
    return True


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(values, dtype=np.float64), q)) if values else math.nan


def _at_most(value: float, limit: float) -> bool:
    """``value <= limit``, where a figure computed from two others (a drop, a ratio) that prints
    as the limit counts as at the limit: 0.92 - 0.91 is a drop of 0.01, not 0.010000000000000009."""
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _differs(a: Any, b: Any, abs_tol: float, rel_tol: float) -> tuple[bool, float]:
    """(whether canary ``a`` differs from stable ``b`` beyond abs + rel*|b|, the max abs diff)."""
    if (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and a.dtype.kind in "fiub"
        and b.dtype.kind in "fiub"
    ):
        if a.shape != b.shape:
            return True, math.inf
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if not diff.size:
            return False, 0.0
        worst = float(np.nanmax(diff)) if np.isfinite(diff).any() else math.inf
        return bool(
            (diff > abs_tol + rel_tol * np.abs(b.astype(np.float64))).any() or np.isnan(diff).any()
        ), worst
    same = (a.tolist() if isinstance(a, np.ndarray) else a) == (
        b.tolist() if isinstance(b, np.ndarray) else b
    )
    return not same, 0.0 if same else math.inf


def judge(
    policy: Policy,
    samples: Sequence[Sample],
    *,
    has_stable: bool,
    metrics: Mapping[str, float] | None = None,
    baseline_metrics: Mapping[str, float] | None = None,
) -> list[Check]:
    """Every check of ``policy`` over the bake's samples (warm-up requests already left out).

    Samples from several replicas are judged together and then replica by replica: each
    replica's checks are named ``replica:<host:port>:<check>``, and the ``replicas`` check passes
    when the share of replicas passing all of theirs reaches ``replicas.min_passing_fraction``,
    so one replica that answers differently, fails or is slow is caught even when the fleet's
    average passes."""
    checks = _sample_checks(policy, samples, has_stable=has_stable)
    replicas = sorted({s.replica for s in samples} - {""})  # "": one server, or a replica that left
    if len(replicas) > 1:
        checks.extend(_per_replica(policy, samples, replicas, has_stable=has_stable))
    checks.extend(_metrics(policy, metrics or {}, baseline_metrics))
    return checks


def _from(sample: Sample) -> str:
    return f"{sample.replica}: " if sample.replica else ""


def _per_replica(
    policy: Policy, samples: Sequence[Sample], replicas: Sequence[str], *, has_stable: bool
) -> list[Check]:
    out: list[Check] = []
    failing: list[tuple[str, Check]] = []
    for replica in replicas:
        own = _sample_checks(policy, [s for s in samples if s.replica == replica], has_stable=has_stable)
        named = [
            Check(f"replica:{replica}:{c.name}", c.status, c.message, c.observed, c.threshold, replica)
            for c in own
        ]
        out.extend(named)
        failing += [(replica, c) for c in own if c.status == FAIL][:1]
    passing = len(replicas) - len(failing)
    fraction = passing / len(replicas)
    least = float(policy["replicas"]["min_passing_fraction"])
    detail = "; ".join(f"{replica}: {c.name}: {c.message}" for replica, c in failing)
    out.append(
        Check(
            "replicas",
            PASS if fraction >= least - 1e-9 else FAIL,
            f"{passing} of {len(replicas)} replicas pass every check (at least {least:g} of them)"
            + (f"; failing: {detail}" if detail else ""),
            fraction,
            least,
        )
    )
    return out


def _sample_checks(policy: Policy, samples: Sequence[Sample], *, has_stable: bool) -> list[Check]:
    """The checks over one set of samples (the fleet's, or one replica's)."""
    checks: list[Check] = []
    canary = [s.canary for s in samples]
    count = len(canary)
    need = int(policy["min_requests"])
    checks.append(
        Check(
            "requests",
            PASS if count >= need else FAIL,
            f"{count} requests sent to the canary (at least {need})",
            count,
            need,
        )
    )
    errors = [s for s in samples if not s.canary.ok]
    rate = len(errors) / count if count else 0.0
    allowed = float(policy["max_error_rate"])
    detail = f"; first: {_from(errors[0])}{errors[0].canary.error}" if errors else ""
    checks.append(
        Check(
            "error_rate",
            PASS if rate <= allowed else FAIL,
            f"error rate {rate:.3f} ({len(errors)} of {count}) against at most {allowed:g}{detail}",
            rate,
            allowed,
        )
    )
    answered = [(s, outputs_of(s.canary, s.request.outputs)) for s in samples if s.canary.ok]
    bad = [s for s, out in answered if not _finite(out)]
    checks.append(
        Check(
            "finite_outputs",
            FAIL if bad else PASS,
            f"{len(bad)} of {len(answered)} answers hold NaN or Inf"
            if bad
            else f"no NaN or Inf in {len(answered)} answers",
            float(len(bad)),
            0.0,
        )
    )
    if not has_stable:
        reason = "no stable version yet (first release): nothing to compare with"
        checks.append(Check("outputs", SKIP, reason))
        checks.append(Check("latency", SKIP, reason))
    else:
        checks.extend(_agreement(policy, samples))
        checks.extend(_latency(policy, samples))
    return checks


def _agreement(policy: Policy, samples: Sequence[Sample]) -> list[Check]:
    rules = policy["outputs"]
    if rules.get("compare") is False:
        return [Check("outputs", SKIP, "output comparison switched off by the policy")]
    abs_tol, rel_tol = float(rules["max_abs_diff"]), float(rules["max_rel_diff"])
    per_output: dict[str, list[tuple[bool, float]]] = {}
    tops: dict[str, list[bool]] = {}
    for sample in samples:
        if sample.stable is None or not (sample.canary.ok and sample.stable.ok):
            continue
        keys = sample.request.outputs
        a, b = outputs_of(sample.canary, keys), outputs_of(sample.stable, keys)
        for key in sorted(set(a) | set(b)):
            name = f"{sample.request.signature}/{key}"
            if key == "top":
                tops.setdefault(sample.request.signature, []).append(a.get(key) == b.get(key))
                continue
            if key not in a or key not in b:
                per_output.setdefault(name, []).append((True, math.inf))
                continue
            per_output.setdefault(name, []).append(_differs(a[key], b[key], abs_tol, rel_tol))
    if not per_output and not tops:
        return [Check("outputs", SKIP, "no request answered by both canary and stable")]
    out = []
    allowed = float(rules["max_differing_fraction"])
    for name, results in sorted(per_output.items()):
        differing = sum(1 for d, _ in results if d)
        fraction = differing / len(results)
        worst = max(w for _, w in results)
        out.append(
            Check(
                f"outputs:{name}",
                PASS if fraction <= allowed else FAIL,
                f"{differing} of {len(results)} answers differ from stable beyond {abs_tol:g} + {rel_tol:g}x "
                f"(fraction {fraction:.3f}, at most {allowed:g}; max abs diff {worst:.3g})",
                fraction,
                allowed,
            )
        )
    least = float(rules["min_top_class_agreement"])
    for signature, agreed in sorted(tops.items()):
        rate = sum(agreed) / len(agreed)
        out.append(
            Check(
                f"top_class:{signature}",
                PASS if rate >= least else FAIL,
                f"top class agrees with stable in {sum(agreed)} of {len(agreed)} answers ({rate:.3f}, at least {least:g})",
                rate,
                least,
            )
        )
    return out


def _latency(policy: Policy, samples: Sequence[Sample]) -> list[Check]:
    pairs = [
        (s.canary.seconds, s.stable.seconds)
        for s in samples
        if s.stable is not None and s.canary.ok and s.stable.ok
    ]
    if not pairs:
        return [Check("latency", SKIP, "no request answered by both canary and stable")]
    out = []
    for q, key in ((50, "max_p50_ratio"), (95, "max_p95_ratio")):
        allowed = float(policy["latency"][key])
        c, s = _percentile([p[0] for p in pairs], q), _percentile([p[1] for p in pairs], q)
        ratio = c / s if s > 0 else math.inf
        out.append(
            Check(
                f"latency_p{q}",
                PASS if _at_most(ratio, allowed) else FAIL,
                f"p{q} latency {c * 1000:.1f} ms against stable's {s * 1000:.1f} ms: ratio {ratio:.2f} (at most {allowed:g})",
                ratio,
                allowed,
            )
        )
    return out


def _metrics(
    policy: Policy, metrics: Mapping[str, float], baseline: Mapping[str, float] | None
) -> list[Check]:
    out = []
    for name, gate in sorted(policy.metric_gates.items()):
        value = metrics.get(name)
        if value is None:
            out.append(Check(f"metric:{name}", FAIL, f"metric {name!r} was not given, the policy gates it"))
            continue
        value = float(value)
        for bound, passes, word in (
            ("min", lambda v, t: v >= t, "at least"),
            ("max", lambda v, t: v <= t, "at most"),
        ):
            if bound in gate:
                limit = float(gate[bound])
                out.append(
                    Check(
                        f"metric:{name}:{bound}",
                        PASS if passes(value, limit) else FAIL,
                        f"{name} {value:g} ({word} {limit:g})",
                        value,
                        limit,
                    )
                )
        for bound, sign in (("max_drop", 1.0), ("max_rise", -1.0)):
            if bound not in gate:
                continue
            limit = float(gate[bound])
            before = (baseline or {}).get(name)
            if before is None:
                out.append(
                    Check(
                        f"metric:{name}:{bound}",
                        SKIP,
                        f"no {name} recorded for stable: no change to judge",
                        value,
                        limit,
                    )
                )
                continue
            change = sign * (float(before) - value)
            out.append(
                Check(
                    f"metric:{name}:{bound}",
                    PASS if _at_most(change, limit) else FAIL,
                    f"{name} {value:g} against stable's {float(before):g}: "
                    f"{'drop' if sign > 0 else 'rise'} {change:g} (at most {limit:g})",
                    change,
                    limit,
                )
            )
    return out


SERIES_POINTS = 2000  # a record keeps at most this many of a bake's samples (evenly spread)


def series(policy: Policy, samples: Sequence[Sample]) -> dict[str, list[Any]]:
    """The bake as columns a page can plot, one entry per request (at most SERIES_POINTS):
    when it was sent, the replica, canary's and stable's latency in ms, whether each failed,
    and whether canary's outputs differed from stable's beyond the policy's tolerance (None:
    not compared)."""
    step = max(1, math.ceil(len(samples) / SERIES_POINTS))
    kept = list(samples)[::step]
    rules = policy["outputs"]
    abs_tol, rel_tol = float(rules["max_abs_diff"]), float(rules["max_rel_diff"])
    out: dict[str, list[Any]] = {
        k: [] for k in ("at", "replica", "canary_ms", "stable_ms", "canary_error", "stable_error", "differs")
    }
    for s in kept:
        out["at"].append(round(s.at, 3))
        out["replica"].append(s.replica)
        out["canary_ms"].append(round(s.canary.seconds * 1000, 3))
        out["stable_ms"].append(round(s.stable.seconds * 1000, 3) if s.stable is not None else None)
        out["canary_error"].append(not s.canary.ok)
        out["stable_error"].append(None if s.stable is None else not s.stable.ok)
        differs: bool | None = None
        if s.stable is not None and s.canary.ok and s.stable.ok and rules.get("compare") is not False:
            a, b = outputs_of(s.canary, s.request.outputs), outputs_of(s.stable, s.request.outputs)
            differs = set(a) != set(b) or any(
                _differs(a[k], b[k], abs_tol, rel_tol)[0] for k in a if k != "top"
            )
        out["differs"].append(differs)
    return out


def failed(checks: Sequence[Check]) -> list[Check]:
    """The checks that decide a rollback: a replica's own checks are its evidence, judged as a
    whole by the ``replicas`` check."""
    return [c for c in checks if c.status == FAIL and c.replica is None]
