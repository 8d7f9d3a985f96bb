"""What the ``savedmodel`` command groups share: argument types checked while parsing, the
options several commands take (storage, checks, publish, trust, signing) and their reading."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def add_command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A command that reads or writes one location (``-o`` gives its fsspec options)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(handler=handler)
    p.add_argument(
        "--storage-option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec storage option for the URL (VALUE parsed as JSON when it is JSON); repeatable",
    )
    return p


def add_transform(
    sub: Any,
    name: str,
    handler: Handler,
    help_text: str,
    dst_help: str = "destination URL; must not exist unless --overwrite",
) -> argparse.ArgumentParser:
    """A command from SRC to DST, each side with its own fsspec options."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
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
    p.add_argument("--src-option", action="append", metavar="KEY=VALUE", help="fsspec option for SRC only")
    p.add_argument("--dst-option", action="append", metavar="KEY=VALUE", help="fsspec option for DST only")
    p.add_argument("--json", action="store_true")
    return p


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


def _served_text(model: dict[str, Any]) -> str:
    labels = ", ".join(f"{k}={n}" for k, n in model["labels"].items()) or "none"
    versions = " ".join(str(n) for n in model["versions"]) or f"latest {model['num_versions']}"
    return f"serving config: {model['name']} serves {versions}; labels: {labels}"


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
    from airflow_savedmodel.storage.signed import load_trust

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
        key,
        password=os.environ.get(KEY_PASSWORD_ENV) or None,
        certificate_chain=chain,
        where=args.sign_key,
        shard_size=getattr(args, "shard_size", None),
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
    _add_shard_size_arg(p)


def _add_shard_size_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard-size",
        metavar="BYTES",
        type=_count(1),
        help="sign each file in ranges of this many bytes (OMS 'shards', hashed in parallel; "
        "OMS suggests 1000000000); default: each file whole ('files', what every verifier reads)",
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
