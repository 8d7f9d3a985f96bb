"""Debian's PostgreSQL and Redis servers for the distributed-stack tests, each an instance of its
own in a temporary directory, bound to 127.0.0.1 on a free port and stopped by the test.

PostgreSQL refuses to run as root: when the tests run as root (CI), the cluster belongs to the
``postgres`` user the Debian package creates and its commands run as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from integration.servers import free_port, wait_for_port


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (make servers installs Debian's postgresql)")
    return found[-1].parent


def missing_servers() -> str | None:
    """Why the distributed stack cannot run here, or None."""
    if not shutil.which("redis-server"):
        return "redis-server is not installed (make servers installs it)"
    try:
        _pg_bin()
    except RuntimeError as exc:
        return str(exc)
    return None


class Postgres:
    """A cluster with one database ``airflow`` owned by user ``airflow`` (password ``airflow``),
    as docker-compose.yml's postgres service creates it."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="savedmodel-pg-"))
        self.data = self.root / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
            " -c fsync=off -c synchronous_commit=off",
            "-w",
            "start",
        )
        wait_for_port(self.port)
        self.sql("CREATE USER airflow WITH PASSWORD 'airflow'")
        self.sql("CREATE DATABASE airflow OWNER airflow")
        self.url = f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self.port}/airflow"

    def _run(self, tool: str, *args: str) -> str:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def sql(self, statement: str) -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-Atc", statement)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """redis-server with no persistence, as a Celery broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="savedmodel-redis-"))
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.root,
            stdout=(self.root / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
