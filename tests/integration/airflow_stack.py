"""A real Airflow 3 for end-to-end tests: api-server, scheduler, dag-processor and triggerer as
separate processes on 127.0.0.1 (LocalExecutor, SQLite; or, as CeleryStack, docker-compose.yml's
settings with the CeleryExecutor, two workers, PostgreSQL and Redis), a login through the simple
auth manager, and a small client for the REST API v2 with a JWT from /auth/token.

Every process runs in its own session and is SIGKILLed with its children by ``stop()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from integration.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USER = "admin"
T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll ``check`` until it returns a value other than None/False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class AirflowStack:
    """Airflow's four services, started in ``home`` with the project's example DAGs."""

    SERVICES: ClassVar[dict[str, list[str]]] = {
        "api-server": ["api-server", "--host", "127.0.0.1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }

    database = "sqlite"  # Airflow's default, as the demo runs it

    def __init__(self, home: Path, demo_root: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.user = USER
        home.mkdir(parents=True, exist_ok=True)
        (home / "passwords.json").write_text(json.dumps({USER: self.password}))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "SAVEDMODEL_"))}
        self.env = {
            **base,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "SAVEDMODEL_DEMO_ROOT": str(demo_root),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    # ---- processes ---------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, args in self.SERVICES.items():
            self.launch(name, args)
        wait_for_port(self.port, timeout=120)
        wait_until("the api-server to answer", self._health, timeout=120)
        return self

    def launch(self, name: str, args: list[str]) -> None:
        """Start one service in a session of its own, its output appended to ``name``.log."""
        extra = ["--port", str(self.port)] if name == "api-server" else []
        log = (self.home / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(BIN / "airflow"), *args, *extra],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _health(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(
                    f"airflow {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            kill_tree(process.pid)
        for process in self.processes.values():
            process.wait(timeout=30)

    # ---- REST API v2 -------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            reply = self._request(
                "POST", "/auth/token", {"username": self.user, "password": self.password}, auth=False
            )
            self._token = str(reply["access_token"])
        return self._token

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(5):
            request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            began = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    raw = reply.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500]
                waited = time.monotonic() - began
                cause = self.server_error(detail.decode(errors="replace")) if exc.code == 500 else ""
                if self.sqlite_locked(exc.code, detail, waited) and attempt < 4:
                    print(f"{method} {path}: SQLite stayed locked for {waited:.1f}s; sent again{cause}")
                    time.sleep(2**attempt)
                    continue
                raise AssertionError(f"{method} {path}: HTTP {exc.code}: {detail!r}{cause}") from None
        raise AssertionError("not reached")

    def sqlite_locked(self, code: int, detail: bytes, waited: float) -> bool:
        """Whether a reply is SQLite's busy timeout: with SQLite (this stack's database) one writer
        gets in at a time, and a write that waited out the 5 s timeout is rolled back whole, so
        sending it again is safe, as for any client of a SQLite-backed Airflow (seen on CI for
        POST /assets/events beside a busy scheduler). Airflow answers it as a plain 500 "Database
        error" (constraint and value errors have their own codes), after the 5 s wait."""
        return self.database == "sqlite" and code == 500 and b'"Database error"' in detail and waited >= 4.5

    def server_error(self, detail: str) -> str:
        """The api-server's own account of a 500 it answered with an error id: the exception
        lines its log holds under that id (the reply hides them)."""
        found = re.search(r"look for ID (\w+)", detail)
        if not found:
            return ""
        marker = f"Error with id {found.group(1)}"
        for log in self.home.glob("*.log"):
            lines = log.read_text(errors="replace").splitlines()
            for index, line in enumerate(lines):
                if marker in line:
                    tail = lines[index : index + 150]
                    causes = [t for t in tail if re.search(r"\w+(Error|Exception)\b[:)]", t)]
                    return "\n" + "\n".join([line, *causes[:6]])
        return ""

    def ui(self, path: str) -> Any:
        """The UI's own API (what the React pages render from)."""
        return self._request("GET", "/ui" + path)

    def get(self, path: str) -> Any:
        return self._request("GET", "/api/v2" + path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", "/api/v2" + path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", "/api/v2" + path, body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        def parsed() -> bool:
            self.check_alive()
            try:
                return bool(self.get(f"/dags/{dag_id}"))
            except AssertionError:
                return False

        wait_until(f"{dag_id} to be parsed", parsed, timeout)

    def unpause(self, dag_id: str) -> None:
        self.wait_for_dag(dag_id)
        self.patch(f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.get(f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")["state"])

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        ti = self.get(
            f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances/{task_id}"
        )
        return ti.get("state")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> None:
        def finished() -> str | None:
            self.check_alive()
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        state = wait_until(f"{dag_id} run {run_id} to finish", finished, timeout)
        if state != "success":
            tis = self.get(f"/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances")
            states = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
            raise AssertionError(f"{dag_id} run {run_id} ended {state}: {states}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        run = urllib.request.quote(run_id, safe="")
        entry = self.get(
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
        )
        return entry["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        run = urllib.request.quote(run_id, safe="")
        reply = self.get(
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        )
        content = reply.get("content", [])
        return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)

    def full_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task log as the log view shows it: each line with the exception it carries."""
        run = urllib.request.quote(run_id, safe="")
        reply = self.get(
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        )
        return "\n".join(_log_line(item) for item in reply.get("content", []))


def _log_line(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    detail = item.get("error_detail")
    return str(item.get("event", "")) + (f" {json.dumps(detail)}" if detail else "")


class DemoUI(AirflowStack):
    """The UI command `make demo` prints (``make ui``: Airflow's four services on the demo's
    home, scripts/demo_ui.py), run as a newcomer runs it: from a shell whose PATH holds only the
    system's directories. The port is the one thing changed (``AIRFLOW__API__PORT``, so tests can
    run beside each other). Logs in with the password it generated; :meth:`terminate` stops it as
    a SIGTERM would, :meth:`stop` kills whatever is left."""

    SERVICES: ClassVar[dict[str, list[str]]] = {"standalone": []}  # the one process: make ui
    PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"

    def __init__(self, command: str, home: Path) -> None:  # one process, not AirflowStack's four
        self.command, self.home = command, home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = ""
        self.user = USER
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "SAVEDMODEL_"))}
        self.env = {**base, "AIRFLOW_HOME": str(home), "PATH": self.PLAIN_PATH}
        self.processes = {}
        self._token = None

    def start(self) -> DemoUI:
        log = (self.home / "standalone.log").open("wb")
        self.processes["standalone"] = subprocess.Popen(
            ["bash", "-c", f"AIRFLOW__API__PORT={self.port} {self.command}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until("the UI and its four services to report healthy", self._all_healthy, timeout=240)
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        self.password = json.loads(passwords.read_text())[USER]
        return self

    def tree(self) -> list[Any]:
        """``make ui`` and every process it started (psutil processes)."""
        return _tree(self.processes["standalone"].pid)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the ``make`` process alone, as a service manager or ``kill`` sends it; its
        exit code once it and everything it started have ended."""
        process = self.processes["standalone"]
        started = self.tree()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=timeout)
        wait_until(
            "every process make ui started to end",
            lambda: not [p for p in started if p.is_running() and p.status() != "zombie"],
            timeout,
        )
        return code

    def _all_healthy(self) -> bool:
        self.check_alive()
        if "FileNotFoundError" in self.log_tail("standalone", 400):
            raise AssertionError("a service failed to start:\n" + self.log_tail("standalone"))
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as reply:
                health = json.loads(reply.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(c) or {}).get("status") == "healthy" for c in components)


def _tree(pid: int) -> list[Any]:
    """A process and all its descendants (psutil processes); empty when it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group and every descendant wherever its group. The tree is
    stopped first (SIGSTOP), until no new member appears, so none forks or is orphaned on the way."""
    import psutil

    stopped: dict[int, Any] = {}
    while fresh := [p for p in _tree(pid) if p.pid not in stopped]:
        for process in fresh:
            with contextlib.suppress(psutil.Error):
                process.suspend()
            stopped[process.pid] = process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for process in stopped.values():
        with contextlib.suppress(psutil.Error):
            process.kill()


COMPOSE = ROOT / "docker-compose.yml"


def compose_environment() -> dict[str, str]:
    """The Airflow settings docker-compose.yml gives every Airflow container (x-airflow-common):
    the one source of the distributed stack's configuration, for the compose file and the tests."""
    import yaml

    document = yaml.safe_load(COMPOSE.read_text())
    return {str(k): str(v) for k, v in document["x-airflow-common"]["environment"].items()}


class CeleryStack(AirflowStack):
    """The stack docker-compose.yml describes, run as processes on 127.0.0.1: PostgreSQL and Redis
    (started by the caller), the api-server, scheduler, dag-processor, triggerer and two Celery
    workers, with compose's Airflow settings; only addresses and paths are mapped to this machine
    (``hosts``: a service's address as compose writes it -> a local one; ``paths``: a container
    path -> a local directory). ``overrides`` are the test's own settings (short heartbeats), said by name."""

    WORKERS = ("worker-1", "worker-2")
    database = "postgresql"

    def __init__(
        self,
        home: Path,
        *,
        hosts: dict[str, str],
        paths: dict[str, str],
        overrides: dict[str, str],
        concurrency: int = 4,
    ) -> None:
        super().__init__(home, home / "savedmodel-demo")
        self.user = "airflow"  # compose's simple auth manager user
        hosts = {**hosts, "airflow-apiserver:8080": f"127.0.0.1:{self.port}"}
        compose = compose_environment()
        for key in compose:
            for old, new in [*hosts.items(), *paths.items()]:
                compose[key] = compose[key].replace(old, new)
        (home / "passwords.json").write_text(json.dumps({self.user: self.password}))
        keep = {k: v for k, v in self.env.items() if not k.startswith("AIRFLOW__CORE__SIMPLE_AUTH")}
        self.env = {**keep, **compose, **overrides}
        self.env.pop("SAVEDMODEL_DEMO_ROOT", None)
        self.concurrency = concurrency
        self.services = {
            **{name: args for name, args in AirflowStack.SERVICES.items()},
            **{
                worker: [
                    "celery",
                    "worker",
                    "--concurrency",
                    str(concurrency),
                    "-H",
                    f"{worker}@%h",
                    "--skip-serve-logs",
                ]
                for worker in self.WORKERS
            },
        }

    def start(self) -> CeleryStack:
        done = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise AssertionError(f"airflow db migrate failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        for name, args in self.services.items():
            self.launch(name, args)
        wait_for_port(self.port, timeout=120)
        wait_until("the api-server to answer", self._health, timeout=120)
        wait_until("both Celery workers to answer", self.workers_answer, timeout=120, every=2)
        return self

    def workers_answer(self) -> bool:
        self.check_alive()
        text = "".join(self.log_tail(worker, 400) for worker in self.WORKERS)
        return text.count(" ready.") >= len(self.WORKERS)

    def holding(self, name: str, path: Path) -> list[int]:
        """The processes a service started (its tasks included, whatever their process group)
        that have ``path`` open now."""
        import psutil

        found = []
        for process in _tree(self.processes[name].pid):
            with contextlib.suppress(psutil.Error):
                if any(f.path == str(path.resolve()) for f in process.open_files()):
                    found.append(process.pid)
        return found

    def kill(self, name: str) -> None:
        """SIGKILL a service and every process it started, as a lost machine would (a worker, its
        supervisors and their tasks, each task in a process group of its own)."""
        process = self.processes.pop(name)
        kill_tree(process.pid)
        process.wait(timeout=30)
