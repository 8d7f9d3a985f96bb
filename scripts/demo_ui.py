"""`make ui`: Airflow's four services on the demo's home, every socket on 127.0.0.1, stopped whole.

What ``airflow standalone`` runs (api-server, scheduler, dag-processor, triggerer, LocalExecutor,
the simple auth manager with a generated admin password), with two differences a newcomer's
machine needs: the scheduler's and triggerer's log servers are not started (standalone's bind
every interface; on one machine the UI reads task logs from the log folder), and Ctrl-C or a
SIGTERM stops every process the services started, task processes included (each task runs in a
process group of its own, but stays in its service's session, which is what is stopped).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

SERVICES = {
    "api-server": ["api-server"],  # host and port from AIRFLOW__API__HOST / AIRFLOW__API__PORT
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
STOP_SECONDS = 20.0  # how long the services get to end on SIGTERM before what is left is killed


def _sessions_members(sessions: set[int]) -> list[int]:
    """Every process whose session is one of ``sessions`` (Linux /proc; elsewhere the leaders)."""
    if not os.path.isdir("/proc"):
        return [pid for pid in sessions if _alive(pid)]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) in sessions:
                    found.append(int(entry))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Services:
    """The four services, each in a session of its own, their output prefixed with their name."""

    def __init__(self, airflow: Path, env: dict[str, str]) -> None:
        self.airflow, self.env = airflow, env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        for name, args in SERVICES.items():
            process = subprocess.Popen(
                [str(self.airflow), *args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes[name] = process
            threading.Thread(target=self._relay, args=(name, process), daemon=True).start()

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            print(f"{name:13}| {line.decode(errors='replace').rstrip()}", flush=True)

    def stop(self) -> None:
        """SIGTERM to everything the services started; SIGKILL to what is left after STOP_SECONDS."""
        self.stopping.set()
        sessions = {p.pid for p in self.processes.values()}
        for pid in _sessions_members(sessions):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _sessions_members(sessions) and time.monotonic() < deadline:
            for process in self.processes.values():
                process.poll()
            time.sleep(0.2)
        for pid in _sessions_members(sessions):
            _signal(pid, signal.SIGKILL)
        for process in self.processes.values():
            process.wait()

    def failed(self) -> str | None:
        """The name of a service that ended on its own, if any."""
        return next((n for n, p in self.processes.items() if p.poll() is not None), None)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # ended meanwhile, or not ours
        os.kill(pid, sig)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as reply:
            health = json.loads(reply.read())
    except (OSError, ValueError):
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((health.get(p) or {}).get("status") == "healthy" for p in parts)


def run(airflow: Path, home: Path, env: dict[str, str]) -> int:
    """Run the services until Ctrl-C or SIGTERM (0), or until one ends on its own (1)."""
    env = {**env, "AIRFLOW__CORE__EXECUTOR": env.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")}
    url = f"http://{env['AIRFLOW__API__HOST']}:{env['AIRFLOW__API__PORT']}"
    passwords = home / "simple_auth_manager_passwords.json.generated"
    new_password = not passwords.exists()
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    services = Services(airflow, env)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    services.start()
    shown = False
    try:
        while not stop.wait(1.0):
            ended = services.failed()
            if ended is not None:
                print(f"==> {ended} ended on its own; stopping the others", file=sys.stderr, flush=True)
                return 1
            if not shown and _healthy(url):
                shown = True
                if new_password and passwords.exists():
                    print(f"==> admin's password: {json.loads(passwords.read_text())['admin']}", flush=True)
                print(f"==> Airflow is ready at {url} (Ctrl-C stops it)", flush=True)
        return 0
    finally:
        print("==> stopping Airflow", flush=True)
        services.stop()
        print("==> stopped", flush=True)
