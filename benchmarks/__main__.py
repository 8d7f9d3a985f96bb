"""Run the benchmarks, print the comparison table and write benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys

from benchmarks.common import ROOT, Row, machine

BENCHMARKS = [
    "bench_inspect",
    "bench_strip",
    "bench_validate",
    "bench_copy",
    "bench_export",
    "bench_triggers",
    "bench_thousand",
    "bench_rollout",
    "bench_replicas",
    "bench_signing",
    "bench_history",
    "bench_models_view",
    "bench_fleet",
    "bench_import",
]


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| benchmark | ratio (>1: ours better) | ours | alternative | alternative |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | **{r.ratio:.2f}x** | {r.ours:.3f} {r.unit} | {r.theirs:.3f} {r.unit} | {r.alternative} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return lines + (["", "Notes:", *notes] if notes else [])


WATCHER_SECTION = "## Publishes watched like TensorFlow Serving"


def merged(text: str, rows: list[Row]) -> str:
    """RESULTS.md after a run of some benchmarks: their rows (and notes) replaced where present,
    added after the table's last row otherwise; every other row and all the prose kept (the
    sections from the serving watcher's on are the tests' figures, left as they are)."""
    head, section, rest = text.partition(WATCHER_SECTION)
    lines = head.rstrip("\n").splitlines()
    fresh = table(rows)
    for row, line in zip(rows, fresh[2 : 2 + len(rows)], strict=True):
        note = f"- {row.name}: {row.note}" if row.note else None
        for prefix, new in ((f"| {row.name} |", line), (f"- {row.name}: ", note)):
            at = [i for i, old in enumerate(lines) if old.startswith(prefix)]
            if at and new is not None:
                lines[at[0]] = new
            elif at:
                del lines[at[0]]
            elif new is not None:
                last = max((i for i, old in enumerate(lines) if old.startswith("| ")), default=len(lines) - 1)
                if new.startswith("- ") and not any(old == "Notes:" for old in lines):
                    lines[last + 1 : last + 1] = ["", "Notes:"]
                    last += 2
                elif new.startswith("- "):
                    last = max(i for i, old in enumerate(lines) if old.startswith("- ") or old == "Notes:")
                lines.insert(last + 1, new)
    notes_at = lines.index("Notes:") if "Notes:" in lines else -1
    if notes_at >= 0 and not any(line.startswith("- ") for line in lines[notes_at + 1 : notes_at + 2]):
        del lines[notes_at - 1 : notes_at + 1]  # no note left: no heading
    return "\n".join(lines) + "\n" + ("\n" + section + rest if section else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[[], *BENCHMARKS], help="benchmarks to run (default: all)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.names or BENCHMARKS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += importlib.import_module(f"benchmarks.{name}").run()
    lines = table(rows)
    print("\n".join(lines))
    if args.no_write:
        return 0
    results = ROOT / "benchmarks" / "RESULTS.md"
    if args.names:  # a part of the benchmarks: the other rows stay as they were measured
        results.write_text(merged(results.read_text(), rows))
        return 0
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {stamp}. Machine: {machine()}.",
        "Each row runs ours and the alternative on the same input in the same run; ratio first.",
        "",
    ]
    # Figures the integration tests measure (serving watcher) are kept as they are.
    kept = results.read_text().partition(WATCHER_SECTION)
    tail = WATCHER_SECTION + kept[2] if kept[1] else ""
    results.write_text("\n".join(header + lines) + "\n" + ("\n" + tail if tail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
