"""Child processes the tests SIGKILL at a chosen moment: after a number of lines of output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_python_killed_after(code: str, args: list[str], lines: int) -> bool:
    """Run ``python -c code *args``; SIGKILL it once it has printed ``lines`` lines.

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
    for seen, line in enumerate(child.stdout, start=1):
        if line.startswith("done"):
            finished = True
            break
        if seen >= lines:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    return finished
