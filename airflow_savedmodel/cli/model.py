"""``savedmodel`` commands that read or rewrite one model: inspect, variables, validate, diff,
strip-default-attrs, clear-devices, copy, warmup.
"""

from __future__ import annotations

import argparse
from typing import Any

from airflow_savedmodel.cli._shared import (
    _add_check_args,
    _checks,
    _count,
    _finish_progress,
    _local_file_arg,
    _print_json,
    _progress_printer,
    _release_arg,
    _side_options,
    _storage_options,
    _tf_serving,
    _tf_serving_arguments,
    _trust,
    add_command,
    add_transform,
)


def register(sub: Any) -> None:
    """Add this group's commands to the ``savedmodel`` parser."""
    p = add_command(
        sub, "inspect", cmd_inspect, "Show tag sets, signatures, variables, assets, ops and fingerprint."
    )
    p.add_argument("url", help="SavedModel directory: a path or any fsspec URL (gs://, s3://, memory://)")
    p.add_argument("--tag-set", help="comma-separated tags of one meta graph, e.g. serve,gpu")
    p.add_argument("--json", action="store_true", help="print the stable JSON document")

    p = add_command(
        sub, "variables", cmd_variables, "List the variables bundle; with --values print tensor values."
    )
    p.add_argument("url")
    p.add_argument("names", nargs="*", metavar="NAME", help="tensor names (default: all)")
    p.add_argument("--values", action="store_true", help="read and print values")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--threshold", type=_count(1), default=1000, help="elements printed before eliding (text output)"
    )

    p = add_command(
        sub, "validate", cmd_validate, "Check a model before it ships; exit 0 when valid, 1 when not."
    )
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

    p = add_command(
        sub,
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

    p = add_transform(
        sub,
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
        sub, "clear-devices", cmd_clear_devices, "Copy a model with every node's device placement removed."
    )

    p = add_transform(
        sub, "copy", cmd_copy, "Copy a whole SavedModel between filesystems, verifying every byte."
    )
    p.add_argument("--concurrency", type=_count(1, 256), default=8, help="files copied at once (default 8)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr")

    p = add_command(
        sub,
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


def _value_text(name: str, value: Any, bundle: Any) -> str:
    import numpy as np

    from airflow_savedmodel.format.bundle import OBJECT_GRAPH_KEY
    from airflow_savedmodel.format.protoio import to_text

    if name == OBJECT_GRAPH_KEY:
        return to_text(bundle.object_graph()).rstrip()
    if value.size == 0:
        return f"[] (empty, shape {value.shape})"
    return np.array2string(np.asarray(value), separator=", ")


def cmd_validate(args: argparse.Namespace) -> int:
    options = _storage_options(args.storage_option)
    report = _checks(args).run(args.url, storage_options=options)
    trust = _trust(args, options) if args.trusted_signers else None
    if trust is not None:
        from airflow_savedmodel.location import resolve
        from airflow_savedmodel.storage import signed

        signed.add_to_report(report, signed.check(resolve(args.url, options), trust))
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.to_text())
    return 0 if report.valid else 1


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
