"""The rollout against the TF Serving stand-in, which loads every version with TensorFlow and
answers :predict and :classify through it: an equal candidate is promoted; perturbed weights, NaN
outputs, a candidate failing every request, a slower one and one that never loads are rolled back
with the check named, while ``stable`` keeps serving the old version throughout."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format import warmup
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.release import records, traffic
from airflow_savedmodel.release.policy import PolicyError, parse
from airflow_savedmodel.release.rollout import RolloutError, ServerUnreachableError, Target, begin, rollout
from airflow_savedmodel.storage import model_config, publish
from airflow_savedmodel.storage.publish import ServingTarget
from airflow_savedmodel.tfserving import Endpoint, fetch_status

from integration.tf_serving_standin import StandInServing

pytestmark = [pytest.mark.integration, pytest.mark.tf]

ROWS = np.random.default_rng(7).standard_normal((6, 4)).astype(np.float32)
# Short bakes for tests; latency p95 is allowed 4x (a 2 ms answer jitters, more beside another
# test worker), the slow case is 20x.
POLICY = {
    "bake_seconds": 0.3,
    "min_requests": 24,
    "warmup_requests": 2,
    "available_timeout_seconds": 30,
    "latency": {"max_p50_ratio": 2.0, "max_p95_ratio": 4.0},
}


def classifier(root: Path, name: str, *, scale: float = 1.0, bias: float = 0.0, broken: bool = False) -> str:
    """A 4 -> 3 classifier with predict and classify signatures and a warmup file for both."""
    kernel = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32) * scale
    layer = DenseLayer(kernel, np.full(3, bias, np.float32), "softmax")
    path = export_dense_model(str(root / name), [layer], classify=True, class_labels=["a", "b", "c"])
    with SavedModel.open(path) as model:
        mg = model.meta_graph("serve")
        data = warmup.requests(mg.signature("serving_default"), {"x": ROWS}) + warmup.requests(
            mg.signature("classify"), {"x": ROWS[:2]}
        )
        if broken:  # an op no TensorFlow registers: the loader refuses the graph
            proto = model.proto
            proto.meta_graphs[0].graph_def.node[-1].op = "NoSuchOp"
            (Path(path) / "saved_model.pb").write_bytes(proto.SerializeToString(deterministic=True))
    (Path(path) / "assets.extra").mkdir()
    (Path(path) / warmup.WARMUP_FILE).write_bytes(data)
    return path


def wait_served(standin: StandInServing, version: int, seconds: float = 60, model: str = "ranker") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = fetch_status(standin.url, model, version)
        if status.available or status.failed:
            return
        time.sleep(0.05)
    raise AssertionError(f"version {version} never settled")


@pytest.fixture
def world(tmp_path: Path) -> Any:
    """A stand-in serving ``ranker`` with version 1 as ``stable``."""
    config = tmp_path / "serving" / "models.config"
    config.parent.mkdir()
    standin = StandInServing(config, poll=0.05)
    base = resolve(str(tmp_path / "serving" / "ranker"))
    target = Target(resolve(str(config)), "ranker", base)
    publish(classifier(tmp_path, "v1"), base, serving=ServingTarget(target.config, "ranker"))
    wait_served(standin, 1)  # TF Serving refuses a label on a version it has not loaded
    model_config.set_labels(target.config, "ranker", base, {"stable": 1})
    try:
        yield standin, target, tmp_path
    finally:
        standin.stop()


def candidate(world: Any, **kwargs: Any) -> int:
    _, target, root = world
    result = publish(
        classifier(root, f"c{time.monotonic_ns()}", **kwargs),
        target.base,
        serving=ServingTarget(target.config, "ranker"),
    )
    return int(result.version)


def run(world: Any, version: int, policy: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    standin, target, _ = world
    requests = traffic.for_version(target.base.join(str(version)))
    return rollout(
        target,
        version,
        Endpoint(standin.url),
        parse(policy or POLICY),
        requests,
        run_id="test-run",
        poll=0.05,
        **kwargs,
    )


def labels(world: Any) -> dict[str, int]:
    _, target, _ = world
    return model_config.describe(model_config.find(model_config.read(target.config), "ranker")).labels


def listed(world: Any) -> list[int]:
    _, target, _ = world
    return model_config.describe(model_config.find(model_config.read(target.config), "ranker")).versions


def test_an_equal_candidate_is_promoted_with_every_check_recorded(world: Any) -> None:
    standin = world[0]
    version = candidate(world, bias=1e-7)  # float noise only
    result = run(world, version, metrics={"accuracy": 0.91})
    assert result.promoted, result.message
    assert labels(world) == {"stable": version, "canary": version}
    names = {c.name: c.status for c in result.checks}
    assert (
        names["available"] == "pass" and names["error_rate"] == "pass" and names["finite_outputs"] == "pass"
    )
    assert names["outputs:serving_default/y"] == "pass" and names["top_class:classify"] == "pass"
    assert names["latency_p50"] == "pass" and names["latency_p95"] == "pass"
    assert set(standin.served_by("ranker", "label:stable")) == {1}  # stable served v1 during the bake
    assert set(standin.served_by("ranker", "label:canary")) == {version}
    record = records.read(world[1].base, version)
    assert record is not None and record["state"] == "promoted" and record["run_id"] == "test-run"
    assert record["metrics"] == {"accuracy": 0.91} and record["stable_before"] == 1
    assert records.current(world[1].base) is None  # the claim is given back


@pytest.mark.parametrize(
    ("kind", "change", "check"),
    [
        ("perturbed weights", {"scale": 3.0}, "outputs:classify/scores"),
        ("NaN outputs", {"bias": float("nan")}, "finite_outputs"),
        ("fails every request", {"bias": 1e-7, "fault": {"error": "Internal: kernel crashed"}}, "error_rate"),
        ("slower", {"bias": 1e-7, "fault": {"delay": 0.06}}, "latency_p50"),
        ("never loads", {"broken": True}, "available"),
    ],
)
def test_a_bad_candidate_is_rolled_back_with_the_check_named(
    world: Any, kind: str, change: dict[str, Any], check: str
) -> None:
    standin, target, _ = world
    fault = change.pop("fault", None)
    version = candidate(world, **change)
    if fault:
        standin.faults[("ranker", version)] = fault
    before = listed(world)
    result = run(world, version)
    assert not result.promoted
    assert result.message.startswith(f"rolled back version {version}: {check} failed: "), result.message
    if kind == "fails every request":
        assert "Internal: kernel crashed" in result.message
    if kind == "never loads":
        assert "NoSuchOp" in result.message  # TF Serving's (TensorFlow's) own error
    assert labels(world) == {"stable": 1}  # canary removed, stable untouched
    assert version not in listed(world) and 1 in listed(world) and len(listed(world)) == len(before) - 1
    assert set(standin.served_by("ranker", "label:stable")) <= {1}
    record = records.read(target.base, version)
    assert record is not None and record["state"] == "rolled_back" and record["message"] == result.message
    failed = [c for c in record["checks"] if c["status"] == "fail"]
    assert failed[0]["name"] == check
    if check != "available":
        assert failed[0]["observed"] is not None and failed[0]["threshold"] is not None


def test_the_first_release_skips_what_needs_a_baseline(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    standin = StandInServing(config, poll=0.05)
    try:
        base = resolve(str(tmp_path / "ranker"))
        target = Target(resolve(str(config)), "ranker", base)
        publish(classifier(tmp_path, "v1"), base, serving=ServingTarget(target.config, "ranker"))
        requests = traffic.for_version(base.join("1"))
        result = rollout(target, 1, Endpoint(standin.url), parse(POLICY), requests, run_id="first", poll=0.05)
        assert result.promoted and result.stable_before is None and result.stable_after == 1
        skipped = {c.name: c.message for c in result.checks if c.status == "skip"}
        assert skipped == {
            "outputs": "no stable version yet (first release): nothing to compare with",
            "latency": "no stable version yet (first release): nothing to compare with",
        }
        assert "(skipped: outputs, latency)" in result.message
    finally:
        standin.stop()


def test_metric_gates_use_the_stable_versions_recorded_metrics(world: Any) -> None:
    policy = {**POLICY, "metrics": {"accuracy": {"min": 0.8, "max_drop": 0.02}}}
    first = candidate(world, bias=1e-7)
    assert run(world, first, policy, metrics={"accuracy": 0.90}).promoted
    worse = candidate(world, bias=2e-7)
    result = run(world, worse, policy, metrics={"accuracy": 0.85})
    assert not result.promoted
    assert result.message.startswith(
        f"rolled back version {worse}: metric:accuracy:max_drop failed: accuracy 0.85 against stable's 0.9: drop 0.05"
    ), result.message
    assert labels(world)["stable"] == first


def test_a_second_rollout_of_the_model_is_refused_naming_the_first(world: Any) -> None:
    standin, target, _ = world
    version = candidate(world, bias=1e-7)
    begin(target, version, Endpoint(standin.url), parse(POLICY), run_id="manual__first")
    config_before = Path(target.config.path).read_bytes()
    other = candidate(world, bias=2e-7)
    config_before = Path(target.config.path).read_bytes()
    with pytest.raises(
        RolloutError, match=r"model 'ranker' is being rolled out by run manual__first \(version 2,"
    ):
        run(world, other)
    assert Path(target.config.path).read_bytes() == config_before  # nothing half-applied


def test_an_unreachable_server_changes_nothing(world: Any) -> None:
    _, target, _ = world
    version = candidate(world, bias=1e-7)
    config_before = Path(target.config.path).read_bytes()
    with pytest.raises(
        ServerUnreachableError,
        match=r"TF Serving does not answer after 3 attempts \(URLError: .*refused.*\): a rollout needs a "
        r"running TF Serving at this address; nothing was changed",
    ):
        begin(
            target, version, Endpoint("http://127.0.0.1:9"), parse(POLICY), run_id="r", sleep=lambda _: None
        )
    assert Path(target.config.path).read_bytes() == config_before
    assert records.current(target.base) is None
    assert "needs a running TF Serving" in (records.read(target.base, version) or {}).get("message", "")
    assert run(world, version).promoted  # the next rollout of the model starts at once


def test_a_rollout_that_fails_frees_its_model_and_says_why(world: Any) -> None:
    """Each way a rollout fails after it named its candidate or before it changed anything
    (nothing to send, a version the config refuses, inputs that cannot be read) ends its record
    with the reason and frees the claim: the next rollout of the model starts at once and
    promotes, and ``serving history`` says why the failed one ended."""
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.release.rollout import wait_available

    standin, target, root = world
    endpoint = Endpoint(standin.url)
    rng = np.random.default_rng(3)
    bare = export_dense_model(  # no warmup file, and the rollout is given no inputs
        str(root / "bare"),
        [DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))],
    )
    silent = publish(bare, target.base, serving=ServingTarget(target.config, "ranker")).version
    result = run(world, silent)
    assert result.decision == "rolled_back", result.message
    assert result.message == (
        f"rolled back version {silent}: bake failed: no requests to send: the candidate has no warmup file "
        "and no inputs were given"
    )
    assert (
        records.current(target.base) is None and "canary" not in labels(world) and silent not in listed(world)
    )

    unlisted = candidate(world, bias=2e-7)
    shutil.rmtree(Path(target.base.path) / str(unlisted) / "variables")  # partial: the config refuses it
    with pytest.raises(StorageError, match="not complete"):
        run(world, unlisted)
    assert records.current(target.base) is None

    unreadable = candidate(world, bias=3e-7)
    begin(target, unreadable, endpoint, parse(POLICY), run_id="inputs")
    hook = SavedModelHook(storage_options={})
    missing = str(root / "no-such-inputs.npz")
    plan = hook.rollout_plan(target.config.path, "ranker", POLICY)
    outcome = hook.finish_rollout(
        plan,
        hook.rollout_state(plan, unreadable),
        available=wait_available(endpoint, "ranker", unreadable, 30),
        endpoint=endpoint,
        inputs_url=missing,
    )
    assert (
        outcome.decision == "rolled_back" and "bake failed" in outcome.message and missing in outcome.message
    )
    assert records.current(target.base) is None and "canary" not in labels(world)

    good = candidate(world, bias=4e-7)
    assert run(world, good).promoted, "the model was free for the next rollout at once"
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_savedmodel",
            "serving",
            "history",
            target.config.path,
            "--model-name",
            "ranker",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert f"version {silent}: rolled_back" in shown and "bake failed: no requests to send" in shown, shown
    assert f"version {unlisted}: failed" in shown and "not complete" in shown, shown
    assert f"version {unreadable}: rolled_back" in shown, shown
    assert f"version {good}: promoted" in shown, shown


def test_a_policy_that_does_not_parse_is_refused_before_anything() -> None:
    with pytest.raises(
        PolicyError, match=r"rollout policy: latency/max_p95_ratio: -1 is less than or equal to"
    ):
        parse({"latency": {"max_p95_ratio": -1}})
    with pytest.raises(
        PolicyError,
        match=r"rollout policy: \(top level\): Additional properties are not allowed \('bake' was unexpected\)",
    ):
        parse({"bake": 3})
    with pytest.raises(PolicyError, match="rollout policy is not JSON"):
        parse("{bad")


CHILD = """
import sys
from airflow_savedmodel.location import resolve
from airflow_savedmodel.release import traffic
from airflow_savedmodel.release.policy import parse
from airflow_savedmodel.release.rollout import Target, rollout
from airflow_savedmodel.tfserving import Endpoint
config, base, url, version = sys.argv[1:5]
target = Target(resolve(config), "ranker", resolve(base))
policy = parse({"bake_seconds": 600, "min_requests": 1, "available_timeout_seconds": 30,
                "abandoned_after_seconds": 1})
rollout(target, int(version), Endpoint(url), policy, traffic.for_version(target.base.join(version)),
        run_id="killed-run", poll=0.05)
"""


def test_a_rollout_killed_mid_bake_is_resumed_by_its_retry_or_rolled_back_once_abandoned(world: Any) -> None:
    """SIGKILL while baking (canary set, the record says baking): the same run's retry resumes
    and decides; another run is refused until the dead one's deadline, then rolls it back."""
    standin, target, _ = world
    version = candidate(world, bias=1e-7)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, target.config.path, target.base.path, standin.url, str(version)]
    )
    try:
        deadline = time.monotonic() + 60
        while not standin.served_by("ranker", "label:canary"):  # the bake has begun
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
    assert labels(world)["canary"] == version and records.read(target.base, version)["state"] == "baking"
    assert labels(world)["stable"] == 1
    active = records.current(target.base)
    assert active is not None and active.run_id == "killed-run"
    # Another run before the deadline: refused, naming the dead run.
    with pytest.raises(RolloutError, match="being rolled out by run killed-run"):
        run(world, version)
    # The same run's retry resumes it and decides.
    requests = traffic.for_version(target.base.join(str(version)))
    resumed = rollout(
        target, version, Endpoint(standin.url), parse(POLICY), requests, run_id="killed-run", poll=0.05
    )
    assert resumed.promoted and records.current(target.base) is None


def test_an_abandoned_rollout_is_rolled_back_by_the_next_one(world: Any) -> None:
    standin, target, _ = world
    dead = candidate(world, bias=1e-7)
    begin(
        target,
        dead,
        Endpoint(standin.url),
        parse(
            {
                **POLICY,
                "available_timeout_seconds": 0.1,
                "bake_seconds": 0,
                "abandoned_after_seconds": 0,
                "replicas": {"max_lag_seconds": 0.01},  # the claim covers the label waits too
            }
        ),
        run_id="dead-run",
    )
    time.sleep(0.2)
    assert dead in listed(world)
    nxt = candidate(world, bias=2e-7)
    result = run(world, nxt)
    assert result.promoted, result.message
    record = records.read(target.base, dead)
    assert record is not None and record["state"] == "rolled_back"
    assert record["message"] == "abandoned: run dead-run did not decide before its deadline; rolled back"
    assert dead not in listed(world)
    assert json.loads(json.dumps(labels(world))) == {"stable": nxt, "canary": nxt}


def test_the_command_line_rolls_out_and_shows_the_history(world: Any, tmp_path: Path) -> None:
    """``savedmodel serving rollout`` exits 0 on promote and 1 on rollback with the check named;
    ``serving history`` lists both decisions; a header's value is never printed."""
    standin, target, _ = world
    policy = tmp_path / "policy.yaml"
    policy.write_text("bake_seconds: 0.3\nmin_requests: 24\nlatency: {max_p50_ratio: 2, max_p95_ratio: 3}\n")
    np.savez(tmp_path / "inputs.npz", x=ROWS)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow_savedmodel", "serving", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    good = candidate(world, bias=1e-7)
    common = [target.config.path, "--model-name", "ranker", "--server", standin.url, "--policy", str(policy)]
    done = cli(
        "rollout",
        *common,
        "--version",
        str(good),
        "--inputs",
        str(tmp_path / "inputs.npz"),
        "--header",
        "Authorization=Bearer s3cr3t-token",
        "--run-id",
        "cli-1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"promoted version {good} to stable" in done.stdout and "s3cr3t" not in done.stdout + done.stderr
    bad = candidate(world, scale=3.0)
    done = cli("rollout", *common, "--version", str(bad), "--run-id", "cli-2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"rolled back version {bad}: outputs:classify/scores failed: " in done.stdout
    history = cli("history", target.config.path, "--model-name", "ranker")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert any(line.startswith(f"version {good}: promoted ") and "run cli-1" in line for line in lines), lines
    assert any(line.startswith(f"version {bad}: rolled_back ") and "run cli-2" in line for line in lines), (
        lines
    )
    as_json = json.loads(cli("history", target.config.path, "--model-name", "ranker", "--json").stdout)
    assert [r["version"] for r in as_json] == [good, bad]
    bad_policy = cli("rollout", *common[:-1], '{"latency": {"max_p95_ratio": 0}}', "--version", str(bad))
    assert (
        bad_policy.returncode == 2
        and "argument --policy: rollout policy: latency/max_p95_ratio" in bad_policy.stderr
    )


def test_the_example_rollout_dag_defers_then_promotes_or_rolls_back(airflow_db: str, tmp_path: Path) -> None:
    """example_savedmodel_canary_rollout from its form, against TF Serving as two replicas (the
    form's server URL lists both; the second loads each version a second later): the rollout
    task defers while they load the candidate, then promotes a good one on both; a bad one fails
    the run with the check named and leaves stable where it was."""
    import os

    from integration.test_airflow import example_dag, run_dag, states

    root = Path(os.environ["SAVEDMODEL_DEMO_ROOT"]) / "serving"
    root.mkdir(parents=True, exist_ok=True)
    target = Target(resolve(str(root / "models.config")), "classifier", resolve(str(root / "classifier")))
    standin = StandInServing(root / "models.config", poll=0.05)
    lagging = StandInServing(root / "models.config", poll=0.05)
    try:
        gated = ServingTarget(target.config, "classifier")
        stable = publish(classifier(tmp_path, "s", bias=3e-7), target.base, serving=gated).version
        wait_served(standin, stable, model="classifier")
        wait_served(lagging, stable, model="classifier")
        model_config.set_labels(target.config, "classifier", target.base, {"stable": stable})
        lagging.load_faults.update(
            {("classifier", n): {"delay": 1.0} for n in range(stable + 1, stable + 10)}
        )
        good = publish(classifier(tmp_path, "g", bias=4e-7), target.base, serving=gated).version
        conf = {"server_url": f"{standin.url},{lagging.url}", "policy": POLICY, "approval": False}
        dag = example_dag("example_savedmodel_canary_rollout")
        run = run_dag(dag, run_conf={**conf, "version": good})
        assert str(run.state) == "success", states(run)
        assert states(run)["approve"] == "skipped" and states(run)["decide"] == "skipped"
        promoted = records.read(target.base, good)
        assert promoted is not None and {c["name"]: c["message"] for c in promoted["checks"]}[
            "available"
        ] == (f"version {good} AVAILABLE on all 2 replicas")
        for replica in (standin, lagging):
            assert fetch_status(replica.url, "classifier", label="stable").version == good
            assert replica.refused_reloads == []
        assert (
            model_config.describe(model_config.find(model_config.read(target.config), "classifier")).labels[
                "stable"
            ]
            == good
        )
        # The Asset event carries the decision (the mirror DAG and others are scheduled on it).
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from savedmodel_demo_settings import CLASSIFIER

        with create_session() as session:
            extras = [
                e.extra
                for e in session.query(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.uri == CLASSIFIER.uri)
                .all()
            ]
        decided = [x for x in extras if "decision" in x]
        assert decided[-1]["decision"] == "promoted" and decided[-1]["version"] == good
        assert decided[-1]["record"].endswith(f"/.savedmodel-releases/{good}.json")
        bad = publish(classifier(tmp_path, "b", scale=3.0), target.base, serving=gated).version
        run = run_dag(dag, run_conf={**conf, "version": None})  # the form's default: newest above stable
        assert states(run)["rollout"] == "failed", states(run)
        record = records.read(target.base, bad)
        assert record is not None and record["state"] == "rolled_back"
        assert record["run_id"].startswith("example_savedmodel_canary_rollout/")
        # the canary label that named the bad version is gone; stable never moved
        assert model_config.describe(
            model_config.find(model_config.read(target.config), "classifier")
        ).labels == {"stable": good}
        # No TF Serving at the form's address: the task fails at its first try (a retry would
        # find none either) saying a running TF Serving is needed; nothing changed, model free.
        from integration.servers import free_port

        nowhere = f"http://127.0.0.1:{free_port()}"
        again = publish(classifier(tmp_path, "n", bias=5e-7), target.base, serving=gated).version
        run = run_dag(dag, run_conf={**conf, "server_url": nowhere, "version": again})
        (rollout_ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "rollout"]
        assert (str(rollout_ti.state), rollout_ti.try_number) == ("failed", 1), states(run)
        refused = records.read(target.base, again)
        assert refused is not None and refused["state"] == "failed", refused
        assert "a rollout needs a running TF Serving at this address" in refused["message"], refused
        assert records.current(target.base) is None
    finally:
        standin.stop()
        lagging.stop()


def test_a_held_rollout_is_promoted_only_by_a_persons_approval(airflow_db: str, world: Any) -> None:
    """hold_for_approval: passing evidence waits (record: awaiting_approval); an approval from
    a person promotes and is recorded; a timeout's default answer rolls back."""
    import datetime

    from airflow.sdk import DAG

    from airflow_savedmodel.operators.savedmodel import (
        SavedModelRolloutDecisionOperator,
        SavedModelRolloutOperator,
    )

    from integration.test_airflow import run_dag, states

    standin, target, _ = world

    def held_then(answer: Any, dag_id: str, bias: float) -> Any:
        # distinct weights per candidate: identical bytes would be deduplicated into one version
        version = candidate(world, bias=bias)
        with DAG(dag_id, schedule=None, start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)) as dag:
            held = SavedModelRolloutOperator(
                task_id="rollout",
                serving_config=target.config.path,
                model_name="ranker",
                version=version,
                server_url=standin.url,
                policy=POLICY,
                hold_for_approval=True,
                deferrable=True,
                poke_interval=0.1,
            )
            decide = SavedModelRolloutDecisionOperator(
                task_id="decide",
                serving_config=target.config.path,
                model_name="ranker",
                version=version,
                answer=answer,
                server_url=standin.url,  # the decision waits until TF Serving follows it
            )
            held >> decide
        return version, run_dag(dag)

    approved, run = held_then(
        {"chosen_options": ["Promote"], "responded_by_user": {"id": "7", "name": "alice"}},
        "held_approved",
        1e-7,
    )
    assert str(run.state) == "success", states(run)
    record = records.read(target.base, approved)
    assert record is not None and record["state"] == "promoted" and record["approval"]["by"] == "alice"
    assert fetch_status(standin.url, "ranker", label="stable").version == approved  # before the task ended
    assert record["checks"][-1] == {
        "name": "approval",
        "status": "pass",
        "message": "approved by alice",
        "observed": None,
        "threshold": None,
    }
    timed_out, run = held_then(
        {"chosen_options": ["Roll back"], "responded_by_user": None}, "held_timeout", 2e-7
    )
    assert timed_out != approved
    assert states(run)["decide"] == "failed"
    record = records.read(target.base, timed_out)
    assert record is not None and record["state"] == "rolled_back"
    assert record["message"].endswith("approval failed: no answer before the approval timed out: rolled back")
    assert labels(world)["stable"] == approved
    canary = fetch_status(standin.url, "ranker", label="canary")
    assert canary.version != timed_out or not canary.available  # no longer served once decided


def _certificates(root: Path) -> tuple[str, str, str]:
    """(CA bundle, server chain, server key) PEM files: a self-signed CA and a certificate it
    signed for 127.0.0.1, as a private gateway in front of TF Serving has."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test gateway CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    (root / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (root / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(root / "ca.pem"), str(root / "chain.pem"), str(root / "key.pem")


def test_tf_serving_behind_tls_and_a_token_through_an_airflow_connection(
    airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP connection (https, the gateway's CA bundle, a bearer token header) reaches the
    stand-in behind TLS for the served sensor, diff's TF Serving URL and the rollout; without the
    CA or the token it is refused, and the token never shows in a message."""
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.hooks.tfserving import TFServingHook

    ca, chain, key = _certificates(tmp_path)
    token = "Bearer tok-9f8e7d6c5b4a"
    config = tmp_path / "models.config"
    standin = StandInServing(config, poll=0.05, tls=(chain, key), require_header=("Authorization", token))
    port = standin.url.rsplit(":", 1)[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_TF_GATEWAY",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": int(port),
                "schema": "https",
                "extra": {"headers": {"Authorization": token}, "verify": ca},
            }
        ),
    )
    try:
        base = resolve(str(tmp_path / "ranker"))
        target = Target(resolve(str(config)), "ranker", base)
        publish(classifier(tmp_path, "v1"), base, serving=ServingTarget(target.config, "ranker"))
        hook = TFServingHook(tf_serving_conn_id="tf_gateway")
        endpoint = hook.endpoint()
        assert endpoint.url == standin.url and "tok-" not in repr(endpoint)
        with pytest.warns(DeprecationWarning, match="use TFServingHook"):  # the old spelling still works
            assert SavedModelHook.tf_serving_endpoint(conn_id="tf_gateway") == endpoint
        deadline = time.monotonic() + 60
        while not hook.status("ranker", 1).available:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        model_config.set_labels(target.config, "ranker", base, {"stable": 1})  # once it is loaded
        assert hook.test_connection() == (True, f"TF Serving answers at {standin.url}")
        # The deferred sensor's trigger asks through aiohttp, with the same connection.
        import asyncio

        from airflow_savedmodel.tfserving import afetch_status
        from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

        assert asyncio.run(afetch_status(endpoint, "ranker", 1)).available

        async def first_event() -> Any:
            trigger = SavedModelServedTrigger(
                None, "ranker", 1, poke_interval=0.1, tf_serving_conn_id="tf_gateway"
            )
            async for event in trigger.run():
                return event.payload

        assert asyncio.run(first_event())["served"]["state"] == "AVAILABLE"
        # The same server without the CA bundle, and with the CA but no token: refused.
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_status(standin.url, "ranker", 1)
        from airflow_savedmodel.errors import ServingError

        with pytest.raises(ServingError, match="HTTP 401: unauthenticated") as refused:
            fetch_status(Endpoint(standin.url, verify=ca), "ranker", 1)
        assert "tok-" not in str(refused.value)
        # diff's TF Serving URL through the connection: the signatures it serves.
        from airflow_savedmodel.storage.baseline import model_to_compare

        baseline = model_to_compare(f"{standin.url}/v1/models/ranker/labels/stable", server=endpoint)
        assert sorted(baseline.signatures) == ["classify", "serving_default"]  # type: ignore[union-attr]
        # The rollout through the gateway.
        version = publish(
            classifier(tmp_path, "v2", bias=1e-7), base, serving=ServingTarget(target.config, "ranker")
        ).version
        requests = traffic.for_version(base.join(str(version)))
        result = rollout(target, version, endpoint, parse(POLICY), requests, run_id="tls", poll=0.05)
        assert result.promoted, result.message
    finally:
        standin.stop()


def test_the_operator_reports_the_decision_as_openlineage_facet(world: Any) -> None:
    """Without deferral (a worker waits instead), the decision becomes the version's dataset
    facet: what the OpenLineage listener sends."""
    from airflow.sdk import DAG

    from airflow_savedmodel.operators.savedmodel import SavedModelRolloutOperator

    standin, target, _ = world
    version = candidate(world, bias=1e-7)
    with DAG("lineage_rollout", schedule=None):
        op = SavedModelRolloutOperator(
            task_id="rollout",
            serving_config=target.config.path,
            model_name="ranker",
            version=str(version),
            server_url=standin.url,
            policy=json.dumps(POLICY),  # as a template renders a dict
            metrics='{"accuracy": 0.93}',
            deferrable=False,
            poke_interval=0.05,
        )
    doc = op.execute({"run_id": "manual__1", "ti": None, "outlet_events": {}})
    assert doc["decision"] == "promoted" and doc["stable_after"] == version
    lineage = op.get_openlineage_facets_on_complete(None)
    (dataset,) = lineage.outputs
    facet = dataset.facets["savedmodel"]
    assert (dataset.namespace, dataset.name) == ("file", f"{target.base.path}/{version}")
    assert facet.version == version and facet.release["decision"] == "promoted"
    assert facet.release["failed"] == [] and facet.release["stable_before"] == 1
    record = records.read(target.base, version)
    assert record is not None and record["run_id"] == "lineage_rollout/manual__1/rollout"
    assert record["metrics"] == {"accuracy": 0.93}


def test_the_training_dag_releases_by_rollout_when_tf_serving_is_there(
    airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SAVEDMODEL_TF_SERVING_URL the nightly DAG ends in a rollout instead of a blind
    promote: the first run is a first release (promoted, checks needing a baseline skipped, the
    training accuracy recorded); a rerun whose export is recognised as the stable version has
    nothing to release and succeeds."""
    import importlib

    import savedmodel_demo_settings

    from integration.test_airflow import example_dag, run_dag, states

    config = tmp_path / "serving" / "models.config"
    config.parent.mkdir()
    standin = StandInServing(config, poll=0.05)
    lagging = StandInServing(config, poll=0.05)  # a second replica, each version a second later
    lagging.load_faults.update({("classifier", n): {"delay": 1.0} for n in range(1, 20)})
    for name, value in {
        "SAVEDMODEL_TF_SERVING_URL": f"{standin.url},{lagging.url}",
        "SAVEDMODEL_SERVING_CONFIG": str(config),  # a config of its own; the base path (and its
        "SAVEDMODEL_EXPORT_ROOT": str(tmp_path / "exports"),  # Asset) stay the demo's
        "SAVEDMODEL_BAKE_SECONDS": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    importlib.reload(savedmodel_demo_settings)
    try:
        dag = example_dag("example_savedmodel_training_to_serving")
        assert "rollout" in dag.task_ids and "promote_to_stable" not in dag.task_ids
        run = run_dag(dag)
        assert str(run.state) == "success", states(run)
        base = resolve(savedmodel_demo_settings.SERVING_BASE)
        published = {ti.task_id: ti for ti in run.get_task_instances()}["publish"].xcom_pull(
            task_ids="publish"
        )
        version = int(published["version"])
        record = records.read(base, version)
        assert record is not None and record["state"] == "promoted", record
        # The publish's Asset event says where the version is served from (the Models view reads it).
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session

        with create_session() as session:
            extras = [
                e.extra
                for e in session.query(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.uri == savedmodel_demo_settings.CLASSIFIER.uri)
                .all()
                if e.extra.get("version") == version and "uri" in e.extra
            ]
        assert extras and extras[-1]["serving_config"] == str(config), extras
        assert extras[-1]["served"]["name"] == "classifier"
        assert record["metrics"]["accuracy"] >= 0.8
        skipped = {c["name"] for c in record["checks"] if c["status"] == "skip" and not c.get("replica")}
        assert skipped == {"outputs", "latency", "metric:accuracy:max_drop"}  # no baseline yet
        assert record["message"] == (
            f"promoted version {version} to stable (skipped: outputs, latency, metric:accuracy:max_drop)"
        )
        assert {c["replica"] for c in record["checks"] if c.get("replica")} == {
            standin.url.split("//")[1],
            lagging.url.split("//")[1],
        }
        again = run_dag(dag)
        assert str(again.state) == "success", states(again)
        labels = model_config.describe(
            model_config.find(model_config.read(resolve(str(config))), "classifier")
        ).labels
        assert labels["stable"] == version
        for replica in (standin, lagging):
            assert fetch_status(replica.url, "classifier", label="stable").version == version
            assert replica.refused_reloads == []
    finally:
        standin.stop()
        lagging.stop()
        monkeypatch.undo()
        importlib.reload(savedmodel_demo_settings)


def test_a_claim_left_without_its_description_does_not_block_the_model_forever(world: Any) -> None:
    """A claimant killed between taking the claim and describing it leaves a claim naming no run:
    fresh, it is respected; older than a claimant needs, the next rollout clears it."""
    import os

    from airflow_savedmodel.storage import leases

    _, target, _ = world
    claim = target.base.join(records.RECORDS_DIR, "active")
    Path(target.base.join(records.RECORDS_DIR).path).mkdir(parents=True, exist_ok=True)
    assert leases.claim(target.base.fs, claim.path, leases.new_token())
    version = candidate(world, bias=1e-7)
    with pytest.raises(RolloutError, match="being rolled out by another run"):
        run(world, version)
    old = time.time() - 2 * records.ORPHAN_CLAIM_SECONDS
    os.utime(claim.path, (old, old))
    assert run(world, version).promoted


def test_signatures_required_refuse_a_changed_candidate_before_and_during_the_rollout(world: Any) -> None:
    """With the trusted signers required (the target's trust, or the policy's
    ``require_signature`` on the command line): a candidate changed after signing is refused
    before anything changes; one changed during the bake fails the ``signature`` check and is
    rolled back, ``stable`` untouched."""
    from airflow_savedmodel.errors import SignedContentError
    from airflow_savedmodel.release.rollout import finish, wait_available
    from airflow_savedmodel.signing.keys import Signer, Trust
    from airflow_savedmodel.storage import manifest as manifests

    from signing_keys import key_pair

    standin, plain, root = world
    keys = key_pair(root / "keys", "release")
    signer, trust = Signer.from_pem(keys.private_pem), Trust.from_pem(keys.public.read_bytes())
    target = Target(plain.config, plain.model, plain.base, trust)

    def signed_candidate() -> int:
        published = publish(
            classifier(root, f"s{time.monotonic_ns()}", bias=1e-7),
            target.base,
            signer=signer,
            serving=ServingTarget(target.config, "ranker"),
        )
        return int(published.version)

    def forge(version: int) -> None:
        where = target.base.join(str(version))
        shard = Path(where.path) / "variables" / "variables.data-00000-of-00001"
        data = bytearray(shard.read_bytes())
        data[-1] ^= 0x01
        shard.write_bytes(bytes(data))
        manifests.write(where.fs, where.path, manifests.scan(where.fs, where.path))

    changed = signed_candidate()
    forge(changed)
    before = Path(target.config.path).read_bytes()
    with pytest.raises(
        SignedContentError, match=r"variables/variables\.data-00000-of-00001: content changed"
    ):
        begin(target, changed, Endpoint(standin.url), parse(POLICY), run_id="r")
    assert Path(target.config.path).read_bytes() == before
    assert records.current(target.base) is None
    refused = records.read(target.base, changed)  # history says why; nothing else changed
    assert refused is not None and refused["state"] == "failed", refused
    assert (
        "failed before it changed anything" in refused["message"] and "content changed" in refused["message"]
    )

    policy = root / "policy.json"
    policy.write_text(json.dumps({**POLICY, "require_signature": str(keys.public)}))
    args = ["serving", "rollout", target.config.path, "--model-name", "ranker", "--version", str(changed)]
    cli = subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", *args, "--server", standin.url, "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1 and "content changed since it was signed" in cli.stderr, cli.stderr
    assert Path(target.config.path).read_bytes() == before

    during = signed_candidate()
    endpoint = Endpoint(standin.url)
    active, stable = begin(target, during, endpoint, parse(POLICY), run_id="bake")
    available = wait_available(endpoint, "ranker", during, 30)
    forge(during)  # changed in the bucket while it bakes
    result = finish(
        target,
        active,
        stable=stable,
        available=available,
        endpoint=endpoint,
        policy=parse(POLICY),
        requests=traffic.for_version(target.base.join(str(during))),
        poll=0.05,
    )
    assert result.decision == "rolled_back" and "signature failed" in result.message, result.message
    (check,) = [c for c in result.checks if c.name == "signature"]
    assert check.status == "fail" and "variables/variables.data-00000-of-00001" in check.message
    assert labels(world)["stable"] == 1 and "canary" not in labels(world)
