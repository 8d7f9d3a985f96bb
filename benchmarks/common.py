"""Shared helpers: timing, fresh-process runs, result rows and the machine note."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass
class Row:
    name: str
    ours: float
    theirs: float
    unit: str  # "s", "ms", "MB", "requests" (lower is better) or "MB/s" (higher is better)
    alternative: str
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times better we are (>1 means faster or higher throughput)."""
        if self.unit in ("s", "ms", "MB", "requests"):
            return self.theirs / self.ours if self.ours else float("inf")
        return self.ours / self.theirs if self.theirs else float("inf")


def median_time(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    ours: Callable[[], object], theirs: Callable[[], object], repeat: int = 5
) -> tuple[float, float]:
    """Median times of two contenders run alternately, so disk writeback and caches that build up
    during one contender's runs weigh on both alike."""
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


@contextlib.contextmanager
def gcs_behind_proxy(delay: float) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The GCS test server, and fsspec options that reach it through a proxy in its own process
    (tests/integration/servers.py) adding ``delay`` seconds to every request, as a real store's
    round trip does, and counting object bytes and requests (``GET /__bytes__``: bytes
    uploaded, bytes downloaded, requests forwarded)."""
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    from integration.servers import GcsServer

    server = GcsServer()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "integration.servers", server.endpoint, str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT / "tests",
    )
    try:
        assert proxy.stdout is not None
        yield server, {"token": "anon", "endpoint_url": proxy.stdout.readline().strip()}
    finally:
        proxy.kill()
        proxy.wait()
        server.stop()


def run_process(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, env=QUIET)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"
