"""The rollout's judging on plain data (no TensorFlow, no server): every check of the policy at
its threshold and on either side of it, each failing check naming its figure and threshold."""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_savedmodel.release import evidence
from airflow_savedmodel.release.evidence import FAIL, PASS, SKIP, Sample, judge
from airflow_savedmodel.release.policy import parse
from airflow_savedmodel.release.traffic import Answer, Request

PREDICT = Request("predict", "serving_default", {"inputs": {"x": [[1.0]]}}, ("y",))
CLASSIFY = Request("classify", "classify", {"examples": [{"x": 1.0}]})


def answer(outputs: Any = 1.0, seconds: float = 0.01, error: str | None = None) -> Answer:
    if error is not None:
        return Answer(500, {"error": error}, seconds, error)
    return Answer(200, {"outputs": outputs}, seconds)


def samples(
    n: int = 20,
    *,
    canary: Any = 1.0,
    stable: Any = 1.0,
    canary_seconds: float = 0.01,
    stable_seconds: float = 0.01,
    failing: int = 0,
) -> list[Sample]:
    """``n`` requests answered alike by both labels; the first ``failing`` fail at the canary."""
    return [
        Sample(
            PREDICT,
            answer(error="HTTP 500: boom") if i < failing else answer(canary, canary_seconds),
            answer(stable, stable_seconds),
        )
        for i in range(n)
    ]


def by_name(checks: list[evidence.Check]) -> dict[str, evidence.Check]:
    return {c.name: c for c in checks}


def test_requests_at_and_below_the_minimum() -> None:
    policy = parse({"min_requests": 20})
    assert by_name(judge(policy, samples(20), has_stable=True))["requests"].status == PASS
    short = by_name(judge(policy, samples(19), has_stable=True))["requests"]
    assert (short.status, short.observed, short.threshold) == (FAIL, 19, 20)
    assert short.message == "19 requests sent to the canary (at least 20)"


@pytest.mark.parametrize(
    ("failing", "allowed", "status"),
    [
        (0, 0.0, PASS),
        (1, 0.0, FAIL),  # one failing request of a hundred fails a policy that allows none
        (1, 0.01, PASS),  # exactly at the threshold
        (2, 0.01, FAIL),
        (100, 0.99, FAIL),
    ],
)
def test_error_rate_around_its_threshold(failing: int, allowed: float, status: str) -> None:
    policy = parse({"max_error_rate": allowed, "min_requests": 1})
    check = by_name(judge(policy, samples(100, failing=failing), has_stable=True))["error_rate"]
    assert (check.status, check.observed, check.threshold) == (status, failing / 100, allowed), check.message
    if failing:
        assert f"({failing} of 100)" in check.message and "first: HTTP 500: boom" in check.message


def test_nan_or_inf_in_any_answer_fails() -> None:
    policy = parse(None)
    clean = by_name(judge(policy, samples(20, canary=[1.0, 2.0]), has_stable=False))["finite_outputs"]
    assert clean.status == PASS
    data = samples(20, canary=[1.0, 2.0])
    data[3] = Sample(PREDICT, answer([1.0, math.nan]), None)
    data[7] = Sample(PREDICT, answer([math.inf, 2.0]), None)
    bad = by_name(judge(policy, data, has_stable=False))["finite_outputs"]
    assert (bad.status, bad.observed, bad.message) == (FAIL, 2.0, "2 of 20 answers hold NaN or Inf")


def test_a_first_release_skips_what_needs_stable() -> None:
    checks = by_name(judge(parse(None), samples(20), has_stable=False))
    assert checks["outputs"].status == SKIP and checks["latency"].status == SKIP
    assert "first release" in checks["outputs"].message


@pytest.mark.parametrize(
    ("canary", "status"),
    [
        (1.0 + 1e-3 + 1e-2 * 1.0 - 1e-9, PASS),  # just inside abs + rel * |stable|
        (1.0 + 1e-3 + 1e-2 * 1.0 + 1e-6, FAIL),  # just outside
    ],
)
def test_outputs_at_the_tolerance(canary: float, status: str) -> None:
    policy = parse({"outputs": {"max_differing_fraction": 0.0}})
    check = by_name(judge(policy, samples(20, canary=canary, stable=1.0), has_stable=True))[
        "outputs:serving_default/y"
    ]
    assert check.status == status, check.message


@pytest.mark.parametrize(("differing", "status"), [(1, PASS), (2, FAIL)])
def test_the_fraction_of_differing_answers_against_its_threshold(differing: int, status: str) -> None:
    policy = parse({"outputs": {"max_differing_fraction": 0.05}})
    data = samples(20, canary=[1.0], stable=[1.0])
    for i in range(differing):
        data[i] = Sample(PREDICT, answer([2.0]), answer([1.0]))
    check = by_name(judge(policy, data, has_stable=True))["outputs:serving_default/y"]
    assert (check.status, check.observed, check.threshold) == (status, differing / 20, 0.05), check.message
    assert f"{differing} of 20 answers differ" in check.message and "max abs diff 1" in check.message


def test_a_changed_shape_or_a_missing_output_differs() -> None:
    policy = parse({"outputs": {"max_differing_fraction": 0.0}})
    shaped = [Sample(PREDICT, answer([[1.0, 1.0]]), answer([[1.0]])) for _ in range(20)]
    assert by_name(judge(policy, shaped, has_stable=True))["outputs:serving_default/y"].status == FAIL
    renamed = [
        Sample(
            PREDICT,
            Answer(200, {"outputs": {"z": [1.0]}}, 0.01),
            Answer(200, {"outputs": {"y": [1.0]}}, 0.01),
        )
        for _ in range(20)
    ]
    checks = by_name(judge(policy, renamed, has_stable=True))
    assert (
        checks["outputs:serving_default/y"].status == FAIL
        and checks["outputs:serving_default/z"].status == FAIL
    )


def test_comparison_switched_off_is_a_skip() -> None:
    checks = by_name(judge(parse({"outputs": {"compare": False}}), samples(20, canary=5.0), has_stable=True))
    assert checks["outputs"].status == SKIP


@pytest.mark.parametrize(("agreeing", "status"), [(19, PASS), (18, FAIL)])
def test_top_class_agreement_around_its_threshold(agreeing: int, status: str) -> None:
    def classified(label: str) -> Answer:
        return Answer(
            200,
            {"results": [[["a", 0.9 if label == "a" else 0.1], ["b", 0.1 if label == "a" else 0.9]]]},
            0.01,
        )

    data = [Sample(CLASSIFY, classified("a" if i < agreeing else "b"), classified("a")) for i in range(20)]
    policy = parse({"outputs": {"min_top_class_agreement": 0.95, "max_abs_diff": 1.0}})
    check = by_name(judge(policy, data, has_stable=True))["top_class:classify"]
    assert (check.status, check.observed, check.threshold) == (status, agreeing / 20, 0.95), check.message


def latency_samples(canary: list[float], stable: list[float]) -> list[Sample]:
    return [Sample(PREDICT, answer(1.0, c), answer(1.0, s)) for c, s in zip(canary, stable, strict=True)]


def test_median_latency_is_held_to_the_p50_threshold_not_the_p95() -> None:
    """A canary 1.6x slower throughout: the median fails max_p50_ratio 1.5 while the p95 passes
    max_p95_ratio 2.0, and each check names its own threshold."""
    stable = [0.010] * 20
    checks = by_name(judge(parse(None), latency_samples([0.016] * 20, stable), has_stable=True))
    p50, p95 = checks["latency_p50"], checks["latency_p95"]
    assert (p50.status, p50.threshold) == (FAIL, 1.5), p50.message
    assert p50.observed == pytest.approx(1.6) and "(at most 1.5)" in p50.message
    assert (p95.status, p95.threshold) == (PASS, 2.0), p95.message


def test_a_slow_tail_is_held_to_the_p95_threshold() -> None:
    """Equal medians, a tail 3x stable's: p50 passes, p95 fails at 2.0."""
    canary = [0.010] * 17 + [0.030] * 3
    checks = by_name(judge(parse(None), latency_samples(canary, [0.010] * 20), has_stable=True))
    assert checks["latency_p50"].status == PASS
    p95 = checks["latency_p95"]
    assert (p95.status, p95.threshold) == (FAIL, 2.0) and p95.observed == pytest.approx(3.0), p95.message


@pytest.mark.parametrize(("ratio", "status"), [(1.5, PASS), (1.51, FAIL)])
def test_latency_at_its_threshold(ratio: float, status: str) -> None:
    checks = by_name(judge(parse(None), latency_samples([0.01 * ratio] * 20, [0.01] * 20), has_stable=True))
    assert checks["latency_p50"].status == status, checks["latency_p50"].message


def test_latency_and_outputs_skip_without_answers_from_both() -> None:
    data = [Sample(PREDICT, answer(error="HTTP 503"), answer(1.0)) for _ in range(20)]
    checks = by_name(judge(parse({"max_error_rate": 1.0}), data, has_stable=True))
    assert checks["latency"].status == SKIP and checks["outputs"].status == SKIP


@pytest.mark.parametrize(
    ("gate", "value", "baseline", "status", "observed"),
    [
        ({"min": 0.9}, 0.9, None, PASS, 0.9),
        ({"min": 0.9}, 0.89, None, FAIL, 0.89),
        ({"max": 0.2}, 0.2, None, PASS, 0.2),
        ({"max": 0.2}, 0.21, None, FAIL, 0.21),
        ({"max_drop": 0.01}, 0.91, 0.92, PASS, pytest.approx(0.01)),
        ({"max_drop": 0.01}, 0.90, 0.92, FAIL, pytest.approx(0.02)),
        ({"max_rise": 0.05}, 0.35, 0.30, PASS, pytest.approx(0.05)),
        ({"max_rise": 0.05}, 0.36, 0.30, FAIL, pytest.approx(0.06)),
        ({"max_drop": 0.01}, 0.5, None, SKIP, 0.5),  # nothing recorded for stable
    ],
)
def test_metric_gates_at_their_bounds(
    gate: dict[str, float], value: float, baseline: float | None, status: str, observed: Any
) -> None:
    policy = parse({"metrics": {"auc": gate}})
    (check,) = [
        c
        for c in judge(
            policy,
            samples(20),
            has_stable=True,
            metrics={"auc": value},
            baseline_metrics=None if baseline is None else {"auc": baseline},
        )
        if c.name.startswith("metric:")
    ]
    assert (check.name, check.status, check.observed) == (
        f"metric:auc:{next(iter(gate))}",
        status,
        observed,
    ), check.message


def test_a_gated_metric_that_was_not_given_fails() -> None:
    (check,) = [
        c
        for c in judge(parse({"metrics": {"auc": {"min": 0.9}}}), samples(20), has_stable=True)
        if "auc" in c.name
    ]
    assert (check.status, check.message) == (FAIL, "metric 'auc' was not given, the policy gates it")


def test_failed_lists_only_the_failing_checks() -> None:
    checks = judge(parse(None), samples(19, canary=9.0), has_stable=True)
    assert [c.name for c in evidence.failed(checks)] == ["requests", "outputs:serving_default/y"]


def _replicas(**per_replica: list[Sample]) -> list[Sample]:
    import dataclasses

    return [dataclasses.replace(s, replica=name) for name, own in per_replica.items() for s in own]


def test_one_replica_that_differs_fails_its_own_check_while_the_fleets_average_passes() -> None:
    policy = parse({"min_requests": 20, "outputs": {"max_differing_fraction": 0.4}})
    fleet = _replicas(a=samples(), b=samples(canary=2.0), c=samples())
    checks = {c.name: c for c in judge(policy, fleet, has_stable=True)}
    assert checks["outputs:serving_default/y"].status == PASS  # 20 of 60 differ: 0.333
    assert checks["replica:b:outputs:serving_default/y"].status == FAIL
    assert checks["replica:b:outputs:serving_default/y"].replica == "b"
    assert checks["replica:a:outputs:serving_default/y"].status == PASS
    replicas = checks["replicas"]
    assert (replicas.status, replicas.observed, replicas.threshold) == (FAIL, 2 / 3, 1.0)
    assert replicas.message.startswith(
        "2 of 3 replicas pass every check (at least 1 of them); failing: b: outputs:serving_default/y: "
        "20 of 20 answers differ"
    )
    assert [c.name for c in evidence.failed(list(checks.values()))] == [
        "replicas"
    ]  # the replica's own is detail


def test_a_quorum_of_replicas_may_pass_when_the_policy_says_so() -> None:
    policy = parse({"min_requests": 20, "replicas": {"min_passing_fraction": 0.5}})
    fleet = _replicas(a=samples(), b=samples(failing=20))
    checks = {c.name: c for c in judge(policy, fleet, has_stable=True)}
    assert checks["replicas"].status == PASS and checks["replica:b:error_rate"].status == FAIL
    assert checks["error_rate"].message.endswith("first: b: HTTP 500: boom")  # the overall figure names it


def test_samples_without_a_replica_are_judged_as_one_server() -> None:
    checks = judge(parse({"min_requests": 20}), samples(), has_stable=True)
    assert not [c for c in checks if c.replica or c.name == "replicas"]
    assert all("replica" not in c.to_json() for c in checks)  # records of one server are unchanged


def test_replica_settings_are_in_the_policy_schema_with_defaults() -> None:
    assert parse(None)["replicas"] == {"max_lag_seconds": 120, "min_passing_fraction": 1.0}
    from airflow_savedmodel.errors import PolicyError

    with pytest.raises(
        PolicyError, match="replicas/min_passing_fraction: 0 is less than or equal to the minimum of 0"
    ):
        parse({"replicas": {"min_passing_fraction": 0}})


def test_the_bake_series_keeps_each_request_for_the_plots_and_is_bounded() -> None:
    import dataclasses

    policy = parse({"min_requests": 20})
    baked = [dataclasses.replace(s, at=i * 0.1, replica="a") for i, s in enumerate(samples(4, failing=1))]
    baked.append(dataclasses.replace(samples(1, canary=2.0)[0], at=0.5, replica="b"))
    found = evidence.series(policy, baked)
    assert found["at"] == [0.0, 0.1, 0.2, 0.3, 0.5] and found["replica"] == ["a"] * 4 + ["b"]
    assert found["canary_error"] == [True, False, False, False, False]
    assert found["differs"] == [None, False, False, False, True]  # a failed answer is not compared
    assert found["canary_ms"][1] == 10.0 and found["stable_ms"][1] == 10.0
    many = evidence.series(policy, samples(5000))
    assert len(many["at"]) == 1667 <= evidence.SERIES_POINTS  # every third kept
