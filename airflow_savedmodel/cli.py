"""The ``savedmodel`` command line: the provider's operations without Airflow.

Exit codes: 0 success, 1 a SavedModel problem (message on stderr, no traceback), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_savedmodel.errors import SavedModelError

if TYPE_CHECKING:
    from airflow_savedmodel.location import Location

Handler = Callable[[argparse.Namespace], int]


def _tf_serving_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"{what}: an HTTP header for TF Serving (e.g. Authorization=Bearer ...); repeatable, never printed",
    )
    p.add_argument(
        "--ca-bundle", metavar="PEM", type=_local_file_arg, help=f"{what}: CA certificates for https"
    )


def _tf_serving(args: argparse.Namespace, url: str) -> Any:
    from airflow_savedmodel.tfserving import Endpoint

    headers = dict(_key_value(h, "--header") for h in args.header)
    return Endpoint(url, headers, args.ca_bundle or True)


def _key_value(pair: str, what: str) -> tuple[str, str]:
    key, sep, raw = pair.partition("=")
    if not sep or not key:  # the text may be a credential: never echo it
        raise argparse.ArgumentTypeError(f"{what} is not NAME=VALUE (its text is not shown)")
    return key, raw


def _storage_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:  # the text may be a credential: never echo it
            raise argparse.ArgumentTypeError("a storage option is not KEY=VALUE (its text is not shown)")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _side_options(args: argparse.Namespace, side: str) -> dict[str, Any]:
    """The fsspec options of SRC or DST: ``-o`` where it applies, then ``--src-option`` /
    ``--dst-option``. ``-o`` goes to each side that is not a local path (to both when neither
    is); with two different remote kinds of store it would be ambiguous and is refused."""
    own = _storage_options(getattr(args, f"{side}_option", None))
    shared = _storage_options(getattr(args, "storage_option", None))
    if not shared:
        return own
    from airflow_savedmodel import schemes

    kinds = {name: _scheme(getattr(args, name)) for name in ("src", "dst")}
    remote = {name for name, kind in kinds.items() if kind and not schemes.of(kind).local}
    if len({schemes.canonical(kinds[name]) for name in remote}) > 1:
        raise argparse.ArgumentTypeError(
            f"-o would apply to both {kinds['src']}:// and {kinds['dst']}://; "
            "use --src-option and --dst-option"
        )
    return {**shared, **own} if side in remote or not remote else own


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from airflow_savedmodel.format import describe
    from airflow_savedmodel.format.model import SavedModel

    with SavedModel.open(args.url, _storage_options(args.storage_option)) as model:
        doc = describe.describe(model, args.tag_set)
        if args.json:
            _print_json(doc)
        else:
            print(describe.render_text(model, doc))
    return 0


def cmd_variables(args: argparse.Namespace) -> int:
    import numpy as np

    from airflow_savedmodel.format import describe
    from airflow_savedmodel.format.model import SavedModel

    with SavedModel.open(args.url, _storage_options(args.storage_option)) as model:
        bundle = model.variables()
        if bundle is None:
            if args.json:
                _print_json({"url": model.url, "variables": []})
            else:
                print("The SavedModel has no variables.")
            return 0
        names = args.names or bundle.names()
        rows = []
        for name in names:
            entry = bundle.entry(name)
            row: dict[str, Any] = {
                "name": name,
                "dtype": entry.dtype_name,
                "shape": list(entry.shape),
                "bytes": bundle.stored_size(name),
            }
            if args.values:
                row["value"] = bundle.read(name)
            rows.append(row)
    if args.json:
        for row in rows:
            if "value" in row:
                row["value"] = describe.value_json(row["value"])
        _print_json({"url": model.url, "variables": rows})
        return 0
    print("\n".join(describe.variable_table(rows)))
    if args.values:
        with np.printoptions(threshold=args.threshold, linewidth=100):
            for row in rows:
                print(f"\n{row['name']} ({row['dtype']}, shape {tuple(row['shape'])}):")
                print(_value_text(row["name"], row["value"], bundle))
    return 0


def _transform(args: argparse.Namespace, name: str, **extra: Any) -> int:
    from airflow_savedmodel.format import transforms

    result = getattr(transforms, name)(
        args.src,
        args.dst,
        src_options=_side_options(args, "src"),
        dst_options=_side_options(args, "dst"),
        overwrite=args.overwrite,
        **extra,
    )
    if args.json:
        _print_json(result.to_json())
    else:
        for mg in result.meta_graphs:
            unknown = f"; ops without an OpDef: {', '.join(mg['unknown_ops'])}" if mg["unknown_ops"] else ""
            print(
                f"meta graph {{{', '.join(mg['tags'])}}}: {mg['changed']} changed over {mg['nodes']} nodes{unknown}"
            )
        print(f"wrote {result.dst}")
    return 0


def cmd_strip_default_attrs(args: argparse.Namespace) -> int:
    if args.target_tf and not args.add:
        raise argparse.ArgumentTypeError(
            "--target-tf applies to --add (whose defaults to add); stripping removes every default-valued attr"
        )
    if args.add:
        return _transform(args, "add_default_attrs", release=args.target_tf)
    return _transform(args, "strip_default_attrs")


def cmd_clear_devices(args: argparse.Namespace) -> int:
    return _transform(args, "clear_devices")


def _op_policy(text: str | None) -> Any:
    """--op-policy: "off", a JSON object, or a JSON file holding one."""
    if text is None or text == "off":
        return text
    from airflow_savedmodel.errors import FormatError

    source = text
    if not text.lstrip().startswith("{"):
        from airflow_savedmodel import location

        fs, path = location.resolve(text)
        source = location.read_file(fs, path, limit=1 << 20).decode("utf-8", errors="replace")
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise FormatError(f"op policy is not JSON: {exc}", None if source is text else text) from None


def _checks(args: argparse.Namespace) -> Any:
    """The validate options (see _add_check_args) as one Checks value."""
    from airflow_savedmodel.format.validate import Checks

    return Checks(
        tags=args.tag_set,
        required_signatures=args.required_signatures,  # None: serving_default of a serve graph
        deep=args.deep,
        target_tf=args.target_tf,
        target_device=args.target_device,
        expect=args.expect,
        strict=args.strict,
        size_warning_bytes=args.size_warning_mb << 20,
        op_policy=args.op_policy,  # parsed while the command line was (_op_policy_arg)
        compatible_with=_compatible_with(args, _storage_options(args.storage_option))
        if args.command == "validate"
        else None,  # export resolves its own
        releases=args.releases,
        require_releases=args.require_releases,
    )


def cmd_diff(args: argparse.Namespace) -> int:
    from airflow_savedmodel import location
    from airflow_savedmodel.errors import NotFoundError
    from airflow_savedmodel.format import compat
    from airflow_savedmodel.format.model import SavedModel
    from airflow_savedmodel.storage.baseline import model_to_compare

    options = _storage_options(args.storage_option)
    config = location.resolve(args.serving_config, options) if args.serving_config else None
    server = _tf_serving(args, args.old) if args.old.startswith(("http://", "https://")) else None
    old = model_to_compare(
        args.old, options=options, config=config, model_name=args.model_name, server=server
    )
    if old is None:
        raise NotFoundError("nothing is served there yet", location.redact(args.old))
    with SavedModel.open(args.new, options) as after:
        signatures = after.meta_graph(args.tag_set).signatures
        if isinstance(old, compat.Baseline):  # what a running TF Serving serves
            return _print_diff(args, old.source, after.url, compat.diff(old.signatures, signatures))
        with SavedModel.open(old.path, fs=old.fs) as before:
            changes = compat.diff(before.meta_graph(args.tag_set).signatures, signatures)
            return _print_diff(args, before.url, after.url, changes)


def _print_diff(args: argparse.Namespace, old: str, new: str, changes: list[Any]) -> int:
    from airflow_savedmodel.format import compat

    broken = compat.breaking(changes)
    if args.json:
        doc = {"old": old, "new": new, "breaking": bool(broken), "changes": [c.to_json() for c in changes]}
        _print_json(doc)
    else:
        print(f"{old} -> {new}")
        for change in changes:
            print(f"  {change.text()}")
        if not changes:
            print("  no signature changes")
        print(f"{len(broken)} breaking, {len(changes) - len(broken)} compatible")
    return 1 if broken else 0


def cmd_validate(args: argparse.Namespace) -> int:
    options = _storage_options(args.storage_option)
    report = _checks(args).run(args.url, storage_options=options)
    trust = _trust(args, options) if args.trusted_signers else None
    if trust is not None:
        from airflow_savedmodel.location import resolve
        from airflow_savedmodel.storage import signatures

        signatures.add_to_report(report, signatures.check(resolve(args.url, options), trust))
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.to_text())
    return 0 if report.valid else 1


def _progress_printer(enabled: bool) -> Any:
    """Progress on stderr: one line rewritten in place on a terminal; elsewhere (a CI log, a
    file) a line per 10 percent, each ending in a newline."""
    if not enabled:
        return None
    terminal = sys.stderr.isatty()
    state = {"last": -1}

    def show(p: Any) -> None:
        percent = int(p.fraction * 100)
        step = percent if terminal else percent - percent % 10
        if step == state["last"]:
            return
        state["last"] = step
        line = f"{percent:3d}%  {p.bytes_done}/{p.bytes_total} bytes  {p.files_done}/{p.files_total} files"
        if terminal:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def cmd_copy(args: argparse.Namespace) -> int:
    from airflow_savedmodel.storage import copy

    result = copy(
        args.src,
        args.dst,
        src_options=_side_options(args, "src"),
        dst_options=_side_options(args, "dst"),
        concurrency=args.concurrency,
        overwrite=args.overwrite,
        progress=_progress_printer(args.progress),
    )
    _finish_progress(args.progress)
    if args.json:
        _print_json(result.to_json())
    else:
        kind = "server-side" if result.server_side else "streamed"
        print(
            f"copied {result.files} files, {result.bytes} bytes ({kind}, verified) to {result.dst} in {result.seconds:.2f}s"
        )
    return 0


def _finish_progress(enabled: bool) -> None:
    if enabled and sys.stderr.isatty():  # end the line rewritten in place
        print(file=sys.stderr)


def _version_arg(raw: str) -> int | str:
    if raw in ("auto", "same"):
        return raw
    try:
        number = int(raw)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(
            f"must be 'auto', 'same' or a version number (0 or more), not {raw!r}"
        )
    return number


# ---- values checked while the command line is parsed (a wrong one exits 2, before any I/O) ----


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high]."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            within = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"must be a whole number {within}, not {raw!r}")
        return value

    return parse


def _non_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, not {raw!r}")
    return value


def _release_arg(raw: str) -> str:
    """A TensorFlow release the package ships a registry for ("2.15", "2.15.1", "v2.15")."""
    from airflow_savedmodel.format import opdefs

    shipped = opdefs.releases()
    if opdefs.normalize(raw) not in shipped:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a shipped TensorFlow release; choose from {shipped[0]} to {shipped[-1]}"
        )
    return opdefs.normalize(raw)


def _release_range_arg(raw: str) -> str:
    from airflow_savedmodel.errors import SavedModelError
    from airflow_savedmodel.format.validate import parse_release_range

    try:
        parse_release_range(raw)
    except SavedModelError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return raw


def _op_policy_arg(raw: str) -> Any:
    """Read (a local file too) and checked while parsing; the parsed policy is handed on, so a
    policy file is read once."""
    from airflow_savedmodel.errors import SavedModelError
    from airflow_savedmodel.format import op_policy

    try:
        spec = _op_policy(raw)
        op_policy.parse(spec)
    except SavedModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def _rollout_policy_arg(raw: str) -> Any:
    """A rollout policy (JSON, or a local JSON/YAML file), checked while parsing."""
    from airflow_savedmodel.errors import SavedModelError
    from airflow_savedmodel.release.policy import load

    if not raw.lstrip().startswith("{") and "://" not in raw and not os.path.isfile(raw):
        raise argparse.ArgumentTypeError(f"no such file: {raw}")
    try:
        return load(raw)
    except SavedModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metrics_arg(raw: str) -> dict[str, float]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"metrics are not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in doc.values()
    ):
        raise argparse.ArgumentTypeError('metrics must be a JSON object of numbers, e.g. {"accuracy": 0.91}')
    return {str(k): float(v) for k, v in doc.items()}


def _local_file_arg(raw: str) -> str:
    """A path that must exist when it is local (URLs are read, and checked, later)."""
    if "://" not in raw and not os.path.isfile(raw):
        raise argparse.ArgumentTypeError(f"no such file: {raw}")
    return raw


def _serving_target(args: argparse.Namespace, dst_options: dict[str, Any]) -> Any:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.publish import ServingTarget

    if args.serving_config:
        if not args.model_name:
            raise argparse.ArgumentTypeError("--serving-config needs --model-name")
        return ServingTarget(
            resolve(args.serving_config, dst_options),
            args.model_name,
            labels=tuple(args.label or ()),
            keep_served=args.keep_served,
            trust=_trust(args, dst_options),
        )
    if args.label:
        raise argparse.ArgumentTypeError("--label needs --serving-config")
    return None


def _print_published(args: argparse.Namespace, result: Any) -> None:
    if result.created:
        print(f"published version {result.version}: {result.url}")
    else:
        print(f"already published as version {result.version}: {result.url} (nothing copied)")
    if result.signed_by:
        print(f"signed by {result.signed_by}")
    if result.served is not None:
        print(_served_text(result.served))


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


def cmd_warmup(args: argparse.Namespace) -> int:
    from airflow_savedmodel import location
    from airflow_savedmodel.format import warmup

    options = _storage_options(args.storage_option)
    written = warmup.write_into(
        location.resolve(args.url, options),
        warmup.load_inputs(*location.resolve(args.inputs, options)),
        signature=args.signature_name,
        count=args.warmup_count,
        tags=args.tag_set,
        model_name=args.model_name,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.warmup_count} warmup request(s) for {args.signature_name!r} to {written}")
    return 0


def _warmup_arg(args: argparse.Namespace) -> Any:
    """export --warmup-inputs: the Warmup to add, inputs read with the source's options."""
    if not args.inputs:
        return None
    from airflow_savedmodel import location
    from airflow_savedmodel.format import warmup
    from airflow_savedmodel.storage.export import Warmup

    inputs = warmup.load_inputs(*location.resolve(args.inputs, _side_options(args, "src")))
    return Warmup(
        inputs,
        signature=args.signature_name,
        count=args.warmup_count,
        tags=args.tag_set,
        model_name=args.model_name or "",
    )


def _compatible_with(args: argparse.Namespace, options: dict[str, Any], base: Any = None) -> Any:
    """--compatible-with, resolved as diff resolves OLD (storage/baseline.py); for export,
    "served" looks under the destination base path and its serving config."""
    if not args.compatible_with:
        return None
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.baseline import SERVED, model_to_compare

    if args.compatible_with == SERVED and base is None:
        raise argparse.ArgumentTypeError(
            "--compatible-with served needs a destination; give the serving base path itself or a "
            "TF Serving model URL (http://host:8501/v1/models/NAME)"
        )
    config = resolve(args.serving_config, options) if getattr(args, "serving_config", None) else None
    return model_to_compare(
        args.compatible_with,
        options=options,
        base=base,
        config=config,
        model_name=getattr(args, "model_name", None),
    )


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


def _served_text(model: dict[str, Any]) -> str:
    labels = ", ".join(f"{k}={n}" for k, n in model["labels"].items()) or "none"
    versions = " ".join(str(n) for n in model["versions"]) or f"latest {model['num_versions']}"
    return f"serving config: {model['name']} serves {versions}; labels: {labels}"


def cmd_serving(args: argparse.Namespace) -> int:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import serving

    options = _storage_options(args.storage_option)
    config = resolve(args.config, options)
    if args.action == "show":
        every = serving.models(serving.read(config, missing_ok=False))
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
    model = serving.move_label(
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
    from airflow_savedmodel.errors import NotFoundError
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.release.rollout import Target
    from airflow_savedmodel.storage import serving

    model = serving.find(serving.read(config, missing_ok=False), name)
    if model is None:
        raise NotFoundError(f"no model {name!r} in the config", config.url)
    return Target(config, name, resolve(model.base_path, options), trust)


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
    endpoint = _tf_serving(args, args.server)
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


def cmd_verify(args: argparse.Namespace) -> int:
    from airflow_savedmodel.storage import verify

    if args.signature:
        return _verify_signature(args)
    result = verify(args.url, _storage_options(args.storage_option), deep=not args.quick)
    if args.json:
        _print_json(result.to_json())
    else:
        print(("OK" if result.ok else "MISMATCH") + f": {result.url}")
        for problem in result.problems:
            print(f"  {problem}")
    return 0 if result.ok else 1


def _verify_signature(args: argparse.Namespace) -> int:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import signatures

    options = _storage_options(args.storage_option)
    trust = _trust(args, options)
    if trust is None:
        raise argparse.ArgumentTypeError(f"verify --signature needs --trusted-signers PEM (or ${TRUST_ENV})")
    result = signatures.check(resolve(args.url, options), trust)
    if args.json:
        _print_json(result.to_json())
    else:
        print(("SIGNED" if result.ok else "NOT VERIFIED") + f": {result.url}")
        if result.ok:
            print(f"  signed by {result.signer}")
        for code, file, message in result.findings:
            print(f"  {code}: {file}: {message}")
    return 0 if result.ok else 1


def cmd_sign(args: argparse.Namespace) -> int:
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage import signatures

    options = _storage_options(args.storage_option)
    model = resolve(args.url, options)
    args.sign_key, args.sign_cert = args.key, args.cert
    signer = _signer(args)
    trust = _trust(args, options) if args.trusted_signers else None
    if trust is not None and model.join(signatures.SIGNATURE_PATH).exists():
        signatures.require(model, trust)  # re-signing vouches only for what verified before
    signatures.sign(model, signer)
    if args.json:
        _print_json(
            {
                "url": model.url,
                "signed_by": signer.describe(),
                "signature": model.join(signatures.SIGNATURE_PATH).url,
            }
        )
    else:
        print(f"signed {model.url} by {signer.describe()}: {model.join(signatures.SIGNATURE_PATH).url}")
    return 0


def _value_text(name: str, value: Any, bundle: Any) -> str:
    import numpy as np

    from airflow_savedmodel.format.bundle import OBJECT_GRAPH_KEY
    from airflow_savedmodel.format.protoio import to_text

    if name == OBJECT_GRAPH_KEY:
        return to_text(bundle.object_graph()).rstrip()
    if value.size == 0:
        return f"[] (empty, shape {value.shape})"
    return np.array2string(np.asarray(value), separator=", ")


def _add_check_args(p: argparse.ArgumentParser) -> None:
    """validate's options, shared by validate and export."""
    p.add_argument("--tag-set", default="serve", help="meta graph that is served (default: serve)")
    p.add_argument(
        "--required-signature",
        "--require-signature",
        action="append",
        dest="required_signatures",
        metavar="KEY",
        help="signature that must exist (default: serving_default when the tag set holds serve, else none)",
    )
    p.add_argument("--deep", action="store_true", help="verify every tensor's crc32c (reads all variables)")
    p.add_argument(
        "--target-tf",
        metavar="X.Y",
        type=_release_arg,
        help="TensorFlow (Serving) release that will load the model (default: the newest shipped)",
    )
    p.add_argument(
        "--target-device",
        choices=["cpu", "gpu", "tpu"],
        default="cpu",
        help="the server's device (default: cpu)",
    )
    p.add_argument(
        "--releases",
        action="store_true",
        help="also list, for every shipped TensorFlow release, whether it serves the model on CPU and GPU and why not",
    )
    p.add_argument(
        "--require-releases",
        metavar="RANGE",
        type=_release_range_arg,
        help='releases that must serve the model on --target-device: "2.15-2.21", "2.15+" or "2.15"',
    )
    p.add_argument(
        "--expect", metavar="SPEC", type=_local_file_arg, help="expected signatures, a JSON or YAML file"
    )
    p.add_argument(
        "--strict", action="store_true", help="with --expect, outputs the spec lacks are errors too"
    )
    p.add_argument(
        "--size-warning-mb", type=_count(1), default=1024, help="warn above this saved_model.pb size"
    )
    p.add_argument(
        "--op-policy",
        metavar="POLICY",
        type=_op_policy_arg,
        help='ops that read/write files, run Python, reach the network or debug: "off", or JSON '
        '(text or file) like {"warning": ["file-read"], "allow": ["PrintV2"]}; default: all are errors',
    )


TRUST_ENV = "SAVEDMODEL_REQUIRE_SIGNATURE"
KEY_PASSWORD_ENV = "SAVEDMODEL_SIGNING_KEY_PASSWORD"


def _add_trust_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--trusted-signers",
        "--trust",
        dest="trusted_signers",
        metavar="PEM",
        help=f"trusted signers (PUBLIC KEY and CERTIFICATE blocks): {what} must verify against them "
        f"(default: ${TRUST_ENV}; neither: signatures not required)",
    )


def _trust(args: argparse.Namespace, options: dict[str, Any] | None = None, policy: Any = None) -> Any:
    """--trusted-signers, else the rollout policy's require_signature, else $SAVEDMODEL_REQUIRE_SIGNATURE."""
    source = getattr(args, "trusted_signers", None) or (
        policy.doc.get("require_signature") if policy else None
    )
    source = source or os.environ.get(TRUST_ENV, "").strip()
    if not source:
        return None
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.signatures import load_trust

    return load_trust(resolve(source, options))


def _signer(args: argparse.Namespace) -> Any:
    """--sign-key (and --sign-cert): who signs; the key's password from $SAVEDMODEL_SIGNING_KEY_PASSWORD."""
    if not getattr(args, "sign_key", None):
        if getattr(args, "sign_cert", None):
            raise argparse.ArgumentTypeError("--sign-cert needs --sign-key")
        return None
    from airflow_savedmodel.signing.keys import Signer

    with open(args.sign_key, "rb") as f:
        key = f.read()
    chain = None
    if args.sign_cert:
        with open(args.sign_cert, "rb") as f:
            chain = f.read()
    return Signer.from_pem(
        key, password=os.environ.get(KEY_PASSWORD_ENV) or None, certificate_chain=chain, where=args.sign_key
    )


def _add_signing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign-key",
        metavar="PEM",
        type=_local_file_arg,
        help=f"sign the version (OMS, model.sig) with this EC private key (password: ${KEY_PASSWORD_ENV})",
    )
    p.add_argument(
        "--sign-cert",
        metavar="PEM",
        type=_local_file_arg,
        help="the signing certificate and its chain (certificate method), the signing certificate first",
    )


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    """publish's options, shared by publish and export."""
    p.add_argument(
        "--version",
        default="auto",
        type=_version_arg,
        help="'auto' (next integer), 'same' (the number SRC ends in, for mirrors) or a version number",
    )
    p.add_argument("--concurrency", type=_count(1, 256), default=8, help="files copied at once (default 8)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr")
    p.add_argument(
        "--serving-config",
        metavar="URL",
        help="gate the publish: name the version in this TF Serving model config file once it is complete",
    )
    p.add_argument("--model-name", help="the model's name in the serving config")
    p.add_argument("--label", action="append", metavar="LABEL", help="point LABEL at the new version")
    p.add_argument(
        "--keep-served", type=_count(1), default=2, help="newest versions the config keeps listed (default 2)"
    )
    _add_signing_args(p)
    _add_trust_arg(p, "a signed SRC (and the version the config names)")


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

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument(
            "--storage-option",
            "-o",
            action="append",
            metavar="KEY=VALUE",
            help="fsspec storage option for the URL (VALUE parsed as JSON when it is JSON); repeatable",
        )
        return p

    p = add("inspect", cmd_inspect, "Show tag sets, signatures, variables, assets, ops and fingerprint.")
    p.add_argument("url", help="SavedModel directory: a path or any fsspec URL (gs://, s3://, memory://)")
    p.add_argument("--tag-set", help="comma-separated tags of one meta graph, e.g. serve,gpu")
    p.add_argument("--json", action="store_true", help="print the stable JSON document")

    p = add("variables", cmd_variables, "List the variables bundle; with --values print tensor values.")
    p.add_argument("url")
    p.add_argument("names", nargs="*", metavar="NAME", help="tensor names (default: all)")
    p.add_argument("--values", action="store_true", help="read and print values")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--threshold", type=_count(1), default=1000, help="elements printed before eliding (text output)"
    )

    p = add("validate", cmd_validate, "Check a model before it ships; exit 0 when valid, 1 when not.")
    p.add_argument("url")
    _add_check_args(p)
    p.add_argument(
        "--trusted-signers",
        "--trust",
        dest="trusted_signers",
        metavar="PEM",
        help="also check the model's OMS signature (model.sig) against these trusted signers",
    )
    p.add_argument(
        "--compatible-with",
        metavar="URL",
        help="the model whose clients must keep working (signature changes): a SavedModel, a serving "
        "base path (the version it serves; with --serving-config, the stable one) or a running TF "
        "Serving's model URL (http://host:8501/v1/models/NAME)",
    )
    p.add_argument(
        "--serving-config",
        metavar="URL",
        help="with a base path in --compatible-with: serve from this config",
    )
    p.add_argument("--model-name", help="the model's name in --serving-config")
    p.add_argument("--json", action="store_true")

    p = add(
        "diff",
        cmd_diff,
        "Compare two models' signatures: what changed, and what breaks clients of OLD. Exit 1 when "
        "something breaks.",
    )
    p.add_argument(
        "old",
        help="the model clients use today: a model URL, a serving base path (its served version) or a "
        "running TF Serving's model URL (http://host:8501/v1/models/NAME[/versions/N|/labels/L])",
    )
    p.add_argument("new", help="the candidate model")
    p.add_argument("--tag-set", default="serve")
    p.add_argument(
        "--serving-config",
        metavar="URL",
        help="with a base path: the served version is the one labelled stable here",
    )
    p.add_argument("--model-name", "--model", dest="model_name", help="the model's name in --serving-config")
    _tf_serving_arguments(p, "OLD as a TF Serving URL")
    p.add_argument("--json", action="store_true")

    def add_transform(
        name: str,
        handler: Handler,
        help_text: str,
        dst_help: str = "destination URL; must not exist unless --overwrite",
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("src", help="source SavedModel URL (never modified)")
        p.add_argument("dst", help=dst_help)
        p.add_argument("--overwrite", action="store_true", help="replace an existing destination")
        p.add_argument(
            "--storage-option",
            "-o",
            action="append",
            metavar="KEY=VALUE",
            help="fsspec option for whichever of SRC and DST is not a local path (both, when both are "
            "on the same kind of store); repeatable",
        )
        p.add_argument(
            "--src-option", action="append", metavar="KEY=VALUE", help="fsspec option for SRC only"
        )
        p.add_argument(
            "--dst-option", action="append", metavar="KEY=VALUE", help="fsspec option for DST only"
        )
        p.add_argument("--json", action="store_true")
        return p

    p = add_transform(
        "strip-default-attrs",
        cmd_strip_default_attrs,
        "Copy a model with default-valued node attrs removed, so older TensorFlow Serving binaries load it.",
    )
    p.add_argument(
        "--add",
        action="store_true",
        help="do the inverse: add every missing default back, as --target-tf's importer does on load",
    )
    p.add_argument(
        "--target-tf",
        metavar="X.Y",
        type=_release_arg,
        help="with --add: the release whose defaults to add (default: the newest shipped)",
    )
    add_transform(
        "clear-devices", cmd_clear_devices, "Copy a model with every node's device placement removed."
    )

    p = add_transform("copy", cmd_copy, "Copy a whole SavedModel between filesystems, verifying every byte.")
    p.add_argument("--concurrency", type=_count(1, 256), default=8, help="files copied at once (default 8)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr")

    base_help = "the serving base path; SRC lands at DST/<version>"
    p = add_transform(
        "publish", cmd_publish, "Publish SRC as DST/<version> (DST is the serving base path).", base_help
    )
    _add_publish_args(p)

    p = add_transform(
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

    p = add(
        "warmup",
        cmd_warmup,
        "Write TF Serving warmup requests (assets.extra/tf_serving_warmup_requests) into a model, "
        "built from inputs in a numpy .npz file and checked against the signature first.",
    )
    p.add_argument("url", help="the SavedModel directory")
    p.add_argument(
        "--inputs",
        required=True,
        metavar="NPZ",
        type=_local_file_arg,
        help="numpy .npz: one array per input (predict) or feature (classify, regress)",
    )
    p.add_argument(
        "--signature-name", "--signature", dest="signature_name", default="serving_default", metavar="KEY"
    )
    p.add_argument(
        "--warmup-count",
        "--count",
        dest="warmup_count",
        type=_count(1, 1000),
        default=1,
        metavar="N",
        help="records to write (1 to 1000)",
    )
    p.add_argument("--tag-set", default="serve")
    p.add_argument("--model-name", default="", help="the model name the requests carry")
    p.add_argument("--overwrite", action="store_true", help="replace an existing warmup file")

    p = add("versions", cmd_versions, "List the versions under a serving base path and their state.")
    p.add_argument("base")
    p.add_argument("--deep", action="store_true", help="check every file's crc32c against its manifest")
    p.add_argument("--json", action="store_true")

    p = add("gc", cmd_gc, "Remove old versions and stale staging areas under a base path.")
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

    p = add(
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
        "--server", metavar="URL", help="rollout: TF Serving's REST API, e.g. http://tf-serving:8501"
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

    p = add(
        "verify",
        cmd_verify,
        "Check a model against its manifest, and with --signature against its OMS signature "
        "(exit 1 on any difference).",
    )
    p.add_argument("url")
    p.add_argument("--quick", action="store_true", help="compare sizes only, not checksums")
    p.add_argument(
        "--signature",
        action="store_true",
        help="check model.sig instead: every file against its signed digest",
    )
    _add_trust_arg(p, "with --signature, the signer")
    p.add_argument("--json", action="store_true")

    p = add(
        "sign",
        cmd_sign,
        "Sign a model in place (OMS v1.0 bundle at MODEL/model.sig over every file), e.g. a version "
        "published before signing was on, or to re-sign with a new key.",
    )
    p.add_argument("url", help="the SavedModel directory (a version)")
    p.add_argument("--key", required=True, metavar="PEM", type=_local_file_arg, help="EC private key")
    p.add_argument(
        "--cert", metavar="PEM", type=_local_file_arg, help="certificate chain (certificate method)"
    )
    _add_trust_arg(p, "an existing signature (re-signing)")
    p.add_argument("--json", action="store_true")
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


if __name__ == "__main__":
    sys.exit(main())
