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
    "bench_signing",
    "bench_history",
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
    if not args.no_write:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = [
            "# Benchmark results",
            "",
            f"Written by `make bench` on {stamp}. Machine: {machine()}.",
            "Each row runs ours and the alternative on the same input in the same run; ratio first.",
            "",
        ]
        results = ROOT / "benchmarks" / "RESULTS.md"
        # Figures the integration tests measure (serving watcher) are kept as they are.
        kept = results.read_text().partition(WATCHER_SECTION)
        tail = WATCHER_SECTION + kept[2] if kept[1] else ""
        results.write_text("\n".join(header + lines) + "\n" + ("\n" + tail if tail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
