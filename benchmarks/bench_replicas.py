"""What a rollout costs against TF Serving as 1, 4 and 16 replicas: the triggerer's CPU per
poll (one SavedModelServedTrigger asking every replica at once, against one trigger per replica,
the obvious way to wait for each) and the worker's CPU per request in a bake (the rollout's
per-replica bake, judging included, against a plain loop sending the same requests to the same
replicas and keeping nothing). The replicas are one process of its own answering TF Serving's
REST status and :predict as fixed JSON, so the CPU counted is the client's alone."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import Row

SERVER = r"""
import http.server, json, sys, threading
count = int(sys.argv[1])
STATUS = json.dumps({"model_version_status": [{"version": "2", "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}]}).encode()
ANSWER = json.dumps({"outputs": [[0.1, 0.2, 0.7]]}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, code, body):
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self._send(404, b'{"error": "not yet"}') if "/versions/999" in self.path else self._send(200, STATUS)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0)); self._send(200, ANSWER)
    def log_message(self, *a): pass
ports = []
for _ in range(count):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports.append(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
print(" ".join(map(str, ports)), flush=True)
threading.Event().wait()
"""

POLLS = 40
POLL_SECONDS = 0.05
BAKE_REQUESTS = 240  # per replica


def _triggerer_cpu(urls: list[str]) -> tuple[float, float]:
    """ms of CPU per poll round: one fleet trigger, against one trigger per replica."""
    import asyncio

    import aiohttp  # noqa: F401  (what the triggers import on their first poll: not a poll's cost)

    import airflow_savedmodel.hooks.tfserving
    import airflow_savedmodel.release.fleet  # noqa: F401
    from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

    async def waiting(triggers: list[SavedModelServedTrigger]) -> None:
        async def one(trigger: SavedModelServedTrigger) -> None:
            async for _ in trigger.run():
                return

        tasks = [asyncio.create_task(one(t)) for t in triggers]
        await asyncio.sleep(POLLS * POLL_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cpu(triggers: list[SavedModelServedTrigger]) -> float:
        start = time.process_time()
        asyncio.run(waiting(triggers))
        return 1000 * (time.process_time() - start) / POLLS

    fleet = cpu([SavedModelServedTrigger(urls, "m", 999, poke_interval=POLL_SECONDS)])
    each = cpu([SavedModelServedTrigger(u, "m", 999, poke_interval=POLL_SECONDS) for u in urls])
    return fleet, each


def _bake_cpu(urls: list[str]) -> tuple[float, float]:
    """ms of worker CPU per request: the rollout's bake and judging, against a plain loop."""
    from airflow_savedmodel.release import evidence
    from airflow_savedmodel.release.policy import parse
    from airflow_savedmodel.release.rollout import bake
    from airflow_savedmodel.release.traffic import Request, send
    from airflow_savedmodel.tfserving import Endpoint, Fleet

    request = Request("predict", "serving_default", {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}, ("y",))
    policy = parse({"bake_seconds": 0, "min_requests": BAKE_REQUESTS, "warmup_requests": 0})
    start = time.process_time()
    baked = bake(Fleet(tuple(urls)), "m", [request], policy, has_stable=True)
    evidence.judge(policy, baked.samples, has_stable=True)
    ours = 1000 * (time.process_time() - start) / (2 * len(baked.samples))
    replicas = [Endpoint(u) for u in urls]
    start = time.process_time()
    for _ in range(BAKE_REQUESTS):
        for replica in replicas:
            send(replica, "m", "canary", request)
            send(replica, "m", "stable", request)
    theirs = 1000 * (time.process_time() - start) / (2 * BAKE_REQUESTS * len(urls))
    return ours, theirs


def run() -> list[Row]:
    rows = []
    for count in (1, 4, 16):
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(count)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            urls = [f"http://127.0.0.1:{p}" for p in server.stdout.readline().split()]
            fleet, each = _triggerer_cpu(urls)
            ours, theirs = _bake_cpu(urls)
        finally:
            server.kill()
            server.wait()
        rows.append(
            Row(
                f"a rollout's wait for TF Serving as {count} replicas: triggerer CPU per poll",
                fleet,
                each,
                "ms",
                "one trigger per replica",
            )
        )
        rows.append(
            Row(
                f"a rollout's bake across {count} replicas: worker CPU per request (incl. judging)",
                ours,
                theirs,
                "ms",
                "a plain loop sending the same requests to the same replicas, keeping nothing",
            )
        )
    return rows
