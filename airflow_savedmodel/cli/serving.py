"""``savedmodel serving``: TF Serving's model config (show, labels, promote, rollback) and the
rollout that moves labels by evidence, with its history.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from airflow_savedmodel.cli._shared import (
    _add_trust_arg,
    _count,
    _local_file_arg,
    _metrics_arg,
    _print_json,
    _rollout_policy_arg,
    _served_text,
    _storage_options,
    _tf_serving,
    _trust,
    add_command,
)

if TYPE_CHECKING:
    from airflow_savedmodel.location import Location


def register(sub: Any) -> None:
    """Add this group's commands to the ``savedmodel`` parser."""
    p = add_command(
        sub,
        "serving",
        cmd_serving,
        "Show or change TensorFlow Serving's model config file: labels, promote, rollback.",
    )
    p.add_argument("action", choices=["show", "set-label", "promote", "rollback", "rollout", "history"])
    p.add_argument("config", help="the model config file (TF Serving's --model_config_file)")
    p.add_argument("--model-name", "--model", dest="model_name", help="the model's name in the config")
    p.add_argument(
        "--label", help="set-label: the label; promote/rollback: the label to move (default stable)"
    )
    p.add_argument(
        "--version",
        type=_count(0),
        help="set-label: the version; rollback: the target (default: previous); rollout: the candidate",
    )
    p.add_argument("--from", dest="source_label", default="canary", help="promote: the label to copy from")
    p.add_argument(
        "--server",
        action="append",
        metavar="URL",
        help="rollout: TF Serving's REST API, e.g. http://tf-serving:8501; repeat it for each replica, or give "
        "dns+http://NAME:8501 to take every address NAME resolves to as a replica",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="rollout: an HTTP header for TF Serving (e.g. Authorization=Bearer ...); repeatable, never printed",
    )
    p.add_argument(
        "--ca-bundle", metavar="PEM", type=_local_file_arg, help="rollout: CA certificates for https"
    )
    p.add_argument(
        "--policy",
        type=_rollout_policy_arg,
        help="rollout: the policy, JSON or a JSON/YAML file (default: the documented defaults)",
    )
    p.add_argument(
        "--inputs",
        metavar="NPZ",
        type=_local_file_arg,
        help="rollout: requests from these inputs, besides the warmup file's",
    )
    p.add_argument(
        "--signature-name",
        "--signature",
        dest="signature_name",
        default="serving_default",
        help="rollout: the signature --inputs are for",
    )
    p.add_argument(
        "--metrics", type=_metrics_arg, help='rollout: the candidate\'s metrics, JSON ({"accuracy": 0.91})'
    )
    p.add_argument("--run-id", help="rollout: names this rollout; the same id resumes an interrupted one")
    _add_trust_arg(p, "the version a label moves to (a rollout's candidate)")
    p.add_argument("--json", action="store_true")


def cmd_serving(args: argparse.Namespace) -> int:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import model_config

    options = _storage_options(args.storage_option)
    config = resolve(args.config, options)
    if args.action == "show":
        every = model_config.models(model_config.read(config, missing_ok=False))
        shown = [m.to_json() for m in every if args.model_name in (None, m.name)]
        if args.model_name is not None and not shown:
            from airflow_savedmodel.errors import NotFoundError

            names = ", ".join(m.name for m in every) or "none"
            raise NotFoundError(f"no model {args.model_name!r} in the config (models: {names})", config.url)
        if not shown and not args.json:
            print("no models in the config")
        if args.json:
            _print_json(shown)
        else:
            for doc in shown:
                print(_served_text(doc) + f" (base {doc['base_path']})")
        return 0
    if not args.model_name:
        raise argparse.ArgumentTypeError(f"serving {args.action} needs --model")
    if args.action == "history":
        return _history(config, args, options)
    if args.action == "rollout":
        return _rollout(config, args, options)
    if args.action == "set-label" and (args.label is None or args.version is None):
        raise argparse.ArgumentTypeError("serving set-label needs --label and --version")
    model = model_config.move_label(
        config,
        args.model_name,
        lambda url: resolve(url, options),
        action={"set-label": "set"}.get(args.action, args.action),
        label=args.label or "stable",
        version=args.version,
        from_label=args.source_label,
        trust=_trust(args, options),
    )
    if args.json:
        _print_json(model.to_json())
    else:
        print(_served_text(model.to_json()))
    return 0


def _release_target(config: Location, name: str, options: dict[str, Any], trust: Any = None) -> Any:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.release.rollout import target_for

    return target_for(config, name, lambda url: resolve(url, options), trust)


def _history(config: Location, args: argparse.Namespace, options: dict[str, Any]) -> int:
    from airflow_savedmodel.release import records

    target = _release_target(config, args.model_name, options)
    found = records.history(target.base)
    if args.json:
        _print_json(found)
        return 0
    if not found:
        print(f"no releases recorded for {args.model_name} under {target.base.url}")
    for record in [r for current in found for r in [*(current.get("earlier") or []), current]]:
        checks = record.get("checks") or []
        counts = ", ".join(
            f"{sum(1 for c in checks if c['status'] == s)} {s}"
            for s in ("pass", "fail", "skip")
            if any(c["status"] == s for c in checks)
        )
        when = record.get("decided") or record.get("started") or ""
        print(
            f"version {record['version']}: {record.get('state')} {when} run {record.get('run_id')}"
            + (f" ({counts})" if counts else "")
        )
        if record.get("message"):
            print(f"  {record['message']}")
        for check in checks:  # each replica's own figures, where a replica failed one
            if check.get("replica") and check["status"] == "fail":
                name = check["name"].removeprefix(f"replica:{check['replica']}:")
                print(f"  replica {check['replica']}: {name}: {check['message']}")
    return 0


def _rollout(config: Location, args: argparse.Namespace, options: dict[str, Any]) -> int:
    import socket

    from airflow_savedmodel.format.warmup import load_inputs
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.release import traffic
    from airflow_savedmodel.release.policy import parse
    from airflow_savedmodel.release.rollout import rollout

    if not args.server or args.version is None:
        raise argparse.ArgumentTypeError("serving rollout needs --server and --version")
    from airflow_savedmodel.tfserving import Fleet

    first = _tf_serving(args, args.server[0])
    endpoint = Fleet(tuple(args.server), first.headers, first.verify, first.timeout)
    policy = args.policy or parse(None)
    target = _release_target(config, args.model_name, options, _trust(args, options, policy))
    inputs = None
    if args.inputs:
        where = resolve(args.inputs, options)
        inputs = load_inputs(where.fs, where.path)
    requests = traffic.for_version(target.base.join(str(args.version)), inputs, args.signature_name)
    run_id = args.run_id or f"cli-{socket.gethostname()}-{int(time.time())}"
    result = rollout(
        target,
        args.version,
        endpoint,
        policy,
        requests,
        run_id=run_id,
        metrics=args.metrics,
    )
    if args.json:
        _print_json(result.to_json())
    else:
        for check in result.checks:
            print(f"  {check.status.upper():5} {check.name}: {check.message}")
        print(result.message)
        if result.record_url:
            print(f"record: {result.record_url}")
    return 1 if result.decision == "rolled_back" else 0
