"""The ``savedmodel`` program: its parser, built from the command groups, and ``main``, which
runs one command and turns every failure into one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Sequence

from airflow_savedmodel.cli import model, serving, signing, versions
from airflow_savedmodel.cli._shared import _storage_options
from airflow_savedmodel.errors import SavedModelError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="savedmodel", description="Inspect, validate, transform and ship TensorFlow SavedModels."
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        dest="library_logs",
        help="also print the storage libraries' own log lines (retries of gcsfs, s3fs, botocore); "
        "without it a failure is the command's one line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (model, versions, serving, signing):
        group.register(sub)
    _hide_old_spellings(parser)
    return parser


_URL_USERINFO = re.compile(r"://([^/@\s]+)@")


def _given_secrets(args: argparse.Namespace) -> list[str]:
    """Credential values the user passed, so that no message repeats them."""
    from airflow_savedmodel.location import secret_values

    found: list[str] = []
    for value in vars(args).values():  # credentials written into URLs (s3://KEY:SECRET@bucket)
        if isinstance(value, str) and (match := _URL_USERINFO.search(value)):
            found += [match.group(1), *match.group(1).split(":")]
    for name in ("storage_option", "src_option", "dst_option"):
        try:
            found += secret_values(_storage_options(getattr(args, name, None)))
        except argparse.ArgumentTypeError:
            continue
    return found


# The storage libraries log each retry and their final give-up (gcsfs: "_request out of retries
# on exception ...") before the command reports the same failure in its own line.
STORAGE_LOGGERS = ("gcsfs", "s3fs", "botocore", "aiobotocore", "fsspec", "google", "urllib3", "aiohttp")


class _OneLineLog(logging.Formatter):
    """Library warnings (gcsfs, s3fs, botocore retries) as one scrubbed line, no traceback: the
    command reports the failure itself."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        from airflow_savedmodel.location import scrub

        return f"savedmodel: {record.name}: {scrub(record.getMessage(), self.secrets)}"


# Old spellings that still work for a deprecation period: {flag: (new flag, commands where it is old)}.
RENAMED_FLAGS = {
    "--require-signature": ("--required-signature", None),
    "--trust": ("--trusted-signers", None),
    "--model": ("--model-name", None),
    "--warmup-inputs": ("--inputs", None),
    "--warmup-signature": ("--signature-name", None),
    "--signature": ("--signature-name", ("warmup", "serving")),  # verify's --signature is current
    "--count": ("--warmup-count", None),
    "--min-age-hours": ("--min-age-seconds", None),
}


def _hide_old_spellings(parser: argparse.ArgumentParser) -> None:
    """Old flag spellings still parse but are left out of --help and of error messages."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                for option in sub._actions:
                    option.option_strings = [
                        o for o in option.option_strings if not _old_spelling(o, option, command)
                    ]


def _old_spelling(flag: str, action: argparse.Action, command: str) -> bool:
    """Whether ``flag`` is an old spelling of ``action``'s first (current) flag in ``command``."""
    new, commands = RENAMED_FLAGS.get(flag, (None, None))
    return new == action.option_strings[0] and (commands is None or command in commands)


def _warn_renamed_flags(argv: Sequence[str], command: str) -> None:
    """One line on stderr for each old flag spelling the command line used."""
    for word in argv:
        flag = word.split("=", 1)[0]
        new, commands = RENAMED_FLAGS.get(flag, (None, None))
        if new and (commands is None or command in commands):
            print(f"savedmodel {command}: {flag} is deprecated; use {new}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _warn_renamed_flags(sys.argv[1:] if argv is None else argv, args.command)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineLog(_given_secrets(args)))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    if not (args.library_logs or getattr(args, "verbose", False)):
        for name in STORAGE_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    started = time.monotonic()
    try:
        return int(args.handler(args))
    except SavedModelError as exc:
        print(f"savedmodel {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except argparse.ArgumentTypeError as exc:  # a value only checkable with another one: usage
        commands = {a.dest: a for a in parser._actions if isinstance(a, argparse._SubParsersAction)}
        command = commands["command"].choices.get(args.command, parser) if "command" in commands else parser
        command.error(str(exc))
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from airflow_savedmodel.location import is_storage_failure, redact, storage_error

        if not is_storage_failure(exc):
            raise
        names = ("url", "src", "dst", "base", "config")
        where = ", ".join(redact(getattr(args, n)) for n in names if getattr(args, n, None))
        print(
            f"savedmodel {args.command}: error: "
            f"{storage_error(exc, where, _given_secrets(args), time.monotonic() - started)}",
            file=sys.stderr,
        )
        return 1
    return 0
