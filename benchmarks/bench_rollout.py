"""The rollout's own overhead during a bake: requests it drives per second and worker CPU per
request (sending, timing, judging, recording), against a plain loop that sends the same
requests to the same two labels and keeps nothing; both against the TF Serving stand-in (which
answers with TensorFlow) in a process of its own, so the CPU counted is the client's alone."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, Row

BAKE_SECONDS = 12.0
ROUNDS = 4
SERVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from integration.tf_serving_standin import StandInServing
server = StandInServing(Path(sys.argv[1]), poll=0.05)
print(server.url, flush=True)
time.sleep(3600)
"""


WAITERS = 100
POLL_SECONDS = 1.0
WAIT_SECONDS = 10.0


def _triggerer_cost(url: str) -> tuple[float, float]:
    """ms of CPU per wait per poll: SavedModelServedTriggers for a version TF Serving does not
    know yet, all on one event loop; against the same polls made blocking from 16 threads."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from airflow_savedmodel.tfserving import fetch_status
    from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

    async def wait_all() -> None:
        triggers = [
            SavedModelServedTrigger(url, "ranker", 999, poke_interval=POLL_SECONDS) for _ in range(WAITERS)
        ]

        async def one(trigger: SavedModelServedTrigger) -> None:
            async for _ in trigger.run():
                return

        tasks = [asyncio.create_task(one(t)) for t in triggers]
        await asyncio.sleep(WAIT_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    cpu = time.process_time()
    asyncio.run(wait_all())
    ours = 1000 * (time.process_time() - cpu) / (WAITERS * WAIT_SECONDS / POLL_SECONDS)

    cpu = time.process_time()
    with ThreadPoolExecutor(16) as pool:
        for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
            started = time.monotonic()
            list(pool.map(lambda _: fetch_status(url, "ranker", 999), range(WAITERS)))
            time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
    theirs = 1000 * (time.process_time() - cpu) / (WAITERS * WAIT_SECONDS / POLL_SECONDS)
    return ours, theirs


def run() -> list[Row]:
    sys.path.insert(0, str(ROOT / "tests"))
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.release import evidence, records, traffic
    from airflow_savedmodel.release.policy import parse
    from airflow_savedmodel.release.rollout import Target, bake, begin, decide, label_served
    from airflow_savedmodel.storage import model_config, publish
    from airflow_savedmodel.storage.publish import ServingTarget
    from airflow_savedmodel.tfserving import Endpoint

    from integration.test_rollout import POLICY, classifier

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "models.config"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(config), str(ROOT / "tests")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()

            def wait_served(number: int) -> None:
                from airflow_savedmodel.tfserving import fetch_status

                deadline = time.monotonic() + 120
                while not fetch_status(url, "ranker", number).available:
                    assert time.monotonic() < deadline, f"version {number} never loaded"
                    time.sleep(0.05)

            base = resolve(str(root / "ranker"))
            target = Target(resolve(str(config)), "ranker", base)
            gated = ServingTarget(target.config, "ranker")
            publish(classifier(root, "v1"), base, serving=gated)
            model_config.set_labels(target.config, "ranker", base, {"stable": 1})
            wait_served(1)
            version = int(publish(classifier(root, "v2", bias=1e-7), base, serving=gated).version)
            wait_served(version)
            endpoint = Endpoint(url)
            policy = parse({**POLICY, "bake_seconds": BAKE_SECONDS, "warmup_requests": 0})
            active, stable = begin(target, version, endpoint, policy, run_id="bench")
            label_served(endpoint, target, "canary", version, timeout=30)
            requests = traffic.for_version(base.join(str(version)))

            bodies = [(f"{url}/v1/models/ranker/labels/{{}}:{r.verb}", r.payload) for r in requests]
            round_policy = parse({**POLICY, "bake_seconds": BAKE_SECONDS / ROUNDS, "warmup_requests": 0})
            ours = [0.0, 0.0, 0]  # wall, CPU, requests
            theirs = [0.0, 0.0, 0]
            checks: list[evidence.Check] = []
            for _ in range(ROUNDS):  # alternating, so the machine's moods weigh on both alike
                cpu, wall = time.process_time(), time.perf_counter()
                samples = bake(endpoint, "ranker", requests, round_policy, has_stable=True)
                checks = evidence.judge(round_policy, samples, has_stable=True)
                ours[0] += time.perf_counter() - wall
                ours[1] += time.process_time() - cpu
                ours[2] += 2 * len(samples)
                cpu, wall = time.process_time(), time.perf_counter()
                sent = 0
                while time.perf_counter() - wall < BAKE_SECONDS / ROUNDS:
                    target_url, body = bodies[sent % len(bodies)]
                    for label in ("canary", "stable"):
                        request = urllib.request.Request(
                            target_url.format(label), body, {"Content-Type": "application/json"}
                        )
                        with urllib.request.urlopen(request) as answer:
                            answer.read()
                    sent += 1
                theirs[0] += time.perf_counter() - wall
                theirs[1] += time.process_time() - cpu
                theirs[2] += 2 * sent
            cpu = time.process_time()
            decide(target, active, checks, stable_before=stable)
            ours[1] += time.process_time() - cpu
            assert records.read(base, version) is not None
            waiting = _triggerer_cost(url)
        finally:
            server.kill()
            server.wait()
    name = f"rollout bakes, {BAKE_SECONDS:.0f} s in {ROUNDS} rounds, against the TF Serving stand-in"
    alternative = "a plain loop sending the same requests to both labels, keeping nothing"
    polls = f"{WAITERS} rollouts waiting for TF Serving on one triggerer, {POLL_SECONDS:g} s polls"
    return [
        Row(
            f"{polls}: CPU per wait per poll",
            waiting[0],
            waiting[1],
            "ms",
            "the same polls as blocking requests from a thread pool (a sensor's pokes)",
        ),
        Row(f"{name}: requests/s driven", ours[2] / ours[0], theirs[2] / theirs[0], "req/s", alternative),
        Row(
            f"{name}: worker CPU per request (incl. judging, recording)",
            1000 * ours[1] / ours[2],
            1000 * theirs[1] / theirs[2],
            "ms",
            alternative,
        ),
    ]
