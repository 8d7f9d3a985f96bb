"""docs/reference.md's command table against the command line itself: every option a command's
``--help`` lists is in its row, and every option a row names exists, so the docs cannot drift."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from airflow_savedmodel.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
# Options every command (or every two-URL command) takes, described once above the table.
COMMON = {"--help", "--storage-option", "--src-option", "--dst-option"}


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def documented() -> dict[str, str]:
    """The first cells of the command table's rows, by command name."""
    rows = {}
    for line in (ROOT / "docs" / "reference.md").read_text().splitlines():
        match = re.match(r"^\| `([a-z-]+)([^`]*)` \|", line)
        if match and match.group(1) in commands():  # a command may have several rows (serving)
            rows[match.group(1)] = rows.get(match.group(1), "") + match.group(1) + match.group(2)
    return rows


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    """The options --help shows (deprecated spellings are hidden from it, and from the table)."""
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    return {o for a in shown for o in a.option_strings if o.startswith("--")} - COMMON


def test_every_command_has_a_row_and_every_option_is_in_it() -> None:
    rows = documented()
    assert set(rows) == set(commands()), set(commands()) ^ set(rows)
    for name, parser in commands().items():
        row = rows[name]
        if name == "export":  # "[validate's options] [publish's options]"
            row += rows["validate"] + rows["publish"]
        named = set(re.findall(r"--[a-z][a-z-]*", row))
        missing = options_of(parser) - named
        assert not missing, f"{name}: --help has {sorted(missing)}, docs/reference.md's row does not"
        unknown = (
            named
            - options_of(parser)
            - (
                options_of(commands()["validate"]) | options_of(commands()["publish"])
                if name == "export"
                else set()
            )
        )
        assert not unknown, f"{name}: docs/reference.md names {sorted(unknown)}, which --help does not have"
