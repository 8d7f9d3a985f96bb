"""Child processes the tests SIGKILL at a chosen moment: after a number of lines of output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_python_killed_after(code: str, args: list[str], lines: int, counting: str = "") -> bool:
    """Run ``python -c code *args``; SIGKILL it once it has printed ``lines`` lines (only lines
    starting with ``counting`` count: a child can mark the window a kill is aimed at).

    True if it printed a line starting with "done" first (it finished before the kill).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    finished = False
    seen = 0
    for line in child.stdout:
        if line.startswith("done"):
            finished = True
            break
        seen += line.startswith(counting)
        if seen >= lines:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    return finished
