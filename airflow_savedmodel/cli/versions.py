"""``savedmodel`` commands on a serving base path's numbered versions: publish, export, versions, gc."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from airflow_savedmodel.cli._shared import (
    _add_check_args,
    _add_publish_args,
    _checks,
    _compatible_with,
    _count,
    _finish_progress,
    _non_negative,
    _print_json,
    _print_published,
    _progress_printer,
    _serving_target,
    _side_options,
    _signer,
    _storage_options,
    _trust,
    _warmup_arg,
    add_command,
    add_transform,
)

if TYPE_CHECKING:
    from airflow_savedmodel.location import Location


def register(sub: Any) -> None:
    """Add this group's commands to the ``savedmodel`` parser."""
    base_help = "the serving base path; SRC lands at DST/<version>"
    p = add_transform(
        sub, "publish", cmd_publish, "Publish SRC as DST/<version> (DST is the serving base path).", base_help
    )
    _add_publish_args(p)

    p = add_transform(
        sub,
        "export",
        cmd_export,
        "Strip default attrs (and optionally clear devices) in memory, validate the result and publish it "
        "as DST/<version> in one pass; within one object store the variables are copied server-side. "
        "Exit 1 when invalid (nothing is published).",
        base_help,
    )
    _add_publish_args(p)
    p.add_argument("--clear-devices", action="store_true", help="clear every node's device placement")
    p.add_argument("--keep-default-attrs", action="store_true", help="do not strip default-valued attrs")
    p.add_argument("--no-validate", action="store_true", help="publish without validating")
    p.add_argument("--verbose", action="store_true", help="print the validation report when valid too")
    p.add_argument(
        "--inputs",
        "--warmup-inputs",
        dest="inputs",
        metavar="NPZ",
        help="add TF Serving warmup requests built from these inputs (a numpy .npz file)",
    )
    p.add_argument(
        "--signature-name",
        "--warmup-signature",
        dest="signature_name",
        default="serving_default",
        metavar="KEY",
    )
    p.add_argument(
        "--warmup-count", type=_count(1, 1000), default=1, metavar="N", help="warmup records (1 to 1000)"
    )
    p.add_argument(
        "--compatible-with",
        metavar="served|URL",
        help="refuse signature changes that break clients of the served version (or of URL)",
    )
    _add_check_args(p)

    p = add_command(
        sub, "versions", cmd_versions, "List the versions under a serving base path and their state."
    )
    p.add_argument("base")
    p.add_argument("--deep", action="store_true", help="check every file's crc32c against its manifest")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "gc", cmd_gc, "Remove old versions and stale staging areas under a base path.")
    p.add_argument("base")
    p.add_argument("--keep-last", type=_count(1), default=5, help="servable versions to keep (default 5)")
    p.add_argument(
        "--min-age-seconds", type=_non_negative, default=0.0, help="never remove anything younger (seconds)"
    )
    p.add_argument("--min-age-hours", type=_non_negative, help=argparse.SUPPRESS)  # deprecated
    p.add_argument(
        "--keep", type=_count(0), action="append", metavar="VERSION", help="a version to keep; repeatable"
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument(
        "--serving-config", metavar="URL", help="never remove versions this TF Serving model config names"
    )
    p.add_argument("--json", action="store_true")


def cmd_publish(args: argparse.Namespace) -> int:
    from airflow_savedmodel.storage import publish

    dst_options = _side_options(args, "dst")
    result = publish(
        args.src,
        args.dst,
        version=args.version,
        src_options=_side_options(args, "src"),
        base_options=dst_options,
        overwrite=args.overwrite,
        concurrency=args.concurrency,
        progress=_progress_printer(args.progress),
        serving=_serving_target(args, dst_options),
        signer=_signer(args),
        trust=_trust(args, _side_options(args, "src")),
    )
    _finish_progress(args.progress)
    if args.json:
        _print_json(result.to_json())
    else:
        _print_published(args, result)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.export import export

    dst_options = _side_options(args, "dst")
    rewrites = (["clear_devices"] if args.clear_devices else []) + (
        [] if args.keep_default_attrs else ["strip_default_attrs"]
    )
    result = export(
        resolve(args.src, _side_options(args, "src")),
        resolve(args.dst, dst_options),
        rewrites=rewrites,
        checks=None if args.no_validate else _checks(args),
        version=args.version,
        overwrite=args.overwrite,
        concurrency=args.concurrency,
        progress=_progress_printer(args.progress),
        serving=_serving_target(args, dst_options),
        warmup=_warmup_arg(args),
        compatible_with=_compatible_with(args, dst_options, resolve(args.dst, dst_options)) or None,
        signer=_signer(args),
        trust=_trust(args, _side_options(args, "src")),
    )
    _finish_progress(args.progress)
    if args.json:
        _print_json(
            {
                "rewrites": list(result.rewrites),
                "changed": result.changed,
                "report": result.report.to_json() if result.report else None,
                "published": result.published.to_json() if result.published else None,
            }
        )
    else:
        if result.report is not None and (args.verbose or not result.report.valid):
            print(result.report.to_text())
        if result.published is not None:
            _print_published(args, result.published)
        else:
            print("not published: the model is invalid", file=sys.stderr)
    return 0 if result.published is not None else 1


def _existing_base(args: argparse.Namespace) -> Location:
    """The base path the command names; a typo in it is an error, not an empty listing."""
    from airflow_savedmodel.errors import NotFoundError
    from airflow_savedmodel.location import resolve

    base = resolve(args.base, _storage_options(args.storage_option))
    if not base.fs.exists(base.path):
        raise NotFoundError("no such base path", base.url)
    return base


def cmd_versions(args: argparse.Namespace) -> int:
    from airflow_savedmodel.storage import list_versions

    base = _existing_base(args)
    found = list_versions(base, deep=args.deep)
    if args.json:
        _print_json([i.to_json() for i in found])
        return 0
    if not found:
        print(f"no versions under {base.url}")
    for info in found:
        detail = f"  ({'; '.join(info.problems)})" if info.problems else ""
        created = info.manifest.created if info.manifest else "-"
        print(f"{info.version:>12}  {info.state:<10}  {created:<25}  {info.url}{detail}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from airflow_savedmodel.storage import gc

    result = gc(
        _existing_base(args),
        keep_last=args.keep_last,
        min_age=args.min_age_seconds if args.min_age_hours is None else args.min_age_hours * 3600,
        keep=args.keep or (),
        dry_run=args.dry_run,
        serving_config_url=args.serving_config,
        storage_options=_storage_options(args.storage_option),
    )
    if args.json:
        _print_json(result.to_json())
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for url in result.removed:
        print(f"{verb} {url}")
    print(f"kept {len(result.kept)} version(s)")
    return 0
