"""The fuzzer: mutated copies of TensorFlow-written models (see mutations.py), each read the way
users read models (open, describe, read every variable, validate --deep, copy), in a forked
child with a time limit and an address-space limit.

Each case ends as ``clean`` (nothing failed), ``typed`` (a SavedModelError), or a defect:
``untyped`` (any other exception), ``timeout``, ``memory`` (MemoryError or killed at the limit).
Defects are kept under the output folder with what was mutated and the traceback.

    python tests/fuzz/run.py --seconds 600 --seed 1        # make fuzz
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# Imported once here, before any fork: the package imports numpy and ml_dtypes only when a tensor
# is decoded, and each forked case would otherwise import them again (a few tenths of a second).
import ml_dtypes  # noqa: E402, F401
import numpy  # noqa: E402, F401
from mutations import mutate  # noqa: E402

from airflow_savedmodel.format import dtypes  # noqa: E402

dtypes.to_numpy(dtypes.from_name("bfloat16"))  # fills the dtype tables, ml_dtypes' included

DEFECTS = ("untyped", "timeout", "memory")
RESULTS_SECTION = "## Fuzzing"


def exercise(model: str, scratch: str) -> str:
    """Read ``model`` every way a user does; "typed" if any step raised a SavedModelError."""
    from airflow_savedmodel.errors import SavedModelError
    from airflow_savedmodel.format import describe
    from airflow_savedmodel.format.model import SavedModel
    from airflow_savedmodel.format.validate import validate
    from airflow_savedmodel.storage import copy

    def read_all() -> None:
        with SavedModel.open(model) as opened:
            describe.describe(opened, None)
            bundle = opened.variables()
            if bundle is not None:
                for name in bundle.names():
                    bundle.read(name)

    outcome = "clean"
    for step in (
        read_all,
        lambda: validate(model, tags=None, required_signatures=(), deep=True),
        lambda: copy(model, os.path.join(scratch, "copy")),
    ):
        try:
            step()
        except SavedModelError:
            outcome = "typed"
    return outcome


def _import_once() -> None:
    """Import what exercise() needs here, so each forked child does not import it again. Only
    import: running it would start threads (copy pools, fsspec's loop), and forking a process
    with live threads can leave a child waiting on a lock nobody will release."""
    import airflow_savedmodel.format.describe
    import airflow_savedmodel.format.model
    import airflow_savedmodel.format.validate
    import airflow_savedmodel.storage  # noqa: F401


def _vm_size() -> int:
    match = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) << 10 if match else 0


def run_case(model: Path, scratch: Path, timeout: float, memory: int) -> tuple[str, str]:
    """(outcome, detail) of one case in a forked child limited to ``memory`` more bytes of
    address space than this process has, and ``timeout`` seconds."""
    limit = _vm_size() + memory
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = (exercise(str(model), str(scratch)), "")
        except MemoryError:
            result = ("memory", traceback.format_exc(limit=-6))
        except BaseException as exc:
            result = ("untyped", f"{type(exc).__name__}: {exc}"[:500] + "\n" + traceback.format_exc(limit=-6))
        try:
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        return "timeout", f"no answer in {timeout}s"
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:  # killed before it could answer: the address-space limit, in practice
        return "memory", f"child ended with status {status} and no answer"
    outcome, detail = json.loads(b"".join(chunks))
    return str(outcome), str(detail)


@dataclass
class Summary:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    defects: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        parts = ", ".join(f"{k} {self.outcomes[k]}" for k in ("clean", "typed", *DEFECTS))
        return f"{self.cases} cases in {self.seconds:.0f}s: {parts}"


def fuzz(
    bases: Sequence[Path],
    *,
    seed: int,
    seconds: float,
    max_cases: int | None = None,
    timeout: float = 5.0,
    memory: int = 2 << 30,
    keep: Path | None = None,
) -> Summary:
    """Mutate ``bases`` round-robin until ``seconds`` pass (or ``max_cases``); count outcomes."""
    rng = random.Random(seed)
    summary = Summary()
    _import_once()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="savedmodel-fuzz-"))
    try:
        while time.monotonic() - started < seconds and (max_cases is None or summary.cases < max_cases):
            base = bases[summary.cases % len(bases)]
            case = work / f"case-{summary.cases}"
            model, scratch = case / "model", case / "scratch"
            scratch.mkdir(parents=True)
            what = mutate(rng, base, model)
            outcome, detail = run_case(model, scratch, timeout, memory)
            summary.outcomes[outcome] += 1
            if outcome in DEFECTS:
                record = {
                    "case": summary.cases,
                    "base": base.parent.name,
                    "mutation": what,
                    "outcome": outcome,
                    "detail": detail,
                }
                summary.defects.append(record)
                if keep is not None:
                    target = keep / f"case-{summary.cases}-{outcome}"
                    shutil.copytree(model, target / "model", symlinks=True)
                    (target / "case.json").write_text(json.dumps(record, indent=1))
            shutil.rmtree(case, ignore_errors=True)
            summary.cases += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary.seconds = time.monotonic() - started
    return summary


def write_results(summary: Summary, seed: int, results: Path) -> None:
    """Replace the fuzzing section of benchmarks/RESULTS.md (make bench keeps it)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = [
        RESULTS_SECTION,
        "",
        f"Written by `make fuzz` on {stamp} (seed {seed}): mutated TensorFlow-written models, each read",
        "(open, describe, every variable, validate --deep, copy) in a child with a 5 s and +2 GiB limit.",
        "",
        "| cases | clean | typed errors | untyped | time-outs | memory blow-ups |",
        "|---|---|---|---|---|---|",
        f"| {summary.cases} | {summary.outcomes['clean']} | {summary.outcomes['typed']} | "
        f"{summary.outcomes['untyped']} | {summary.outcomes['timeout']} | {summary.outcomes['memory']} |",
        "",
    ]
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    head, found, rest = text.partition(RESULTS_SECTION)
    tail = ""
    if found and "\n## " in rest:
        tail = "## " + rest.split("\n## ", 1)[1]
    results.write_text(head.rstrip("\n") + "\n\n" + "\n".join(section) + ("\n" + tail if tail else ""))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, help="stop after this many cases (a fixed, repeatable set)")
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "test-artifacts" / "fuzz")
    parser.add_argument("--no-write", action="store_true", help="leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from zoo_cache import built_zoo

    bases = list(built_zoo().values())
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    summary = fuzz(bases, seed=args.seed, seconds=args.seconds, max_cases=args.cases, keep=args.out)
    print(summary.line())
    for defect in summary.defects[:20]:
        print(
            f"  case {defect['case']} ({defect['base']}): {defect['outcome']}: {defect['mutation']}\n    {defect['detail'].splitlines()[0]}"
        )
    if not args.no_write:
        write_results(summary, args.seed, HERE.parents[1] / "benchmarks" / "RESULTS.md")
    return 1 if summary.defects else 0


if __name__ == "__main__":
    sys.exit(main())
