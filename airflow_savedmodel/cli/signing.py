"""``savedmodel`` commands on OMS signatures: verify (manifest or signature) and sign."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_savedmodel.cli._shared import (
    TRUST_ENV,
    _add_shard_size_arg,
    _add_trust_arg,
    _local_file_arg,
    _print_json,
    _signer,
    _storage_options,
    _trust,
    add_command,
)


def register(sub: Any) -> None:
    """Add this group's commands to the ``savedmodel`` parser."""
    p = add_command(
        sub,
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

    p = add_command(
        sub,
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
    _add_shard_size_arg(p)
    _add_trust_arg(p, "an existing signature (re-signing)")
    p.add_argument("--json", action="store_true")


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
    from airflow_savedmodel.storage import signed

    options = _storage_options(args.storage_option)
    trust = _trust(args, options)
    if trust is None:
        raise argparse.ArgumentTypeError(f"verify --signature needs --trusted-signers PEM (or ${TRUST_ENV})")
    result = signed.check(resolve(args.url, options), trust)
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
    from airflow_savedmodel.storage import signed

    options = _storage_options(args.storage_option)
    model = resolve(args.url, options)
    args.sign_key, args.sign_cert = args.key, args.cert
    signer = _signer(args)
    trust = _trust(args, options) if args.trusted_signers else None
    if trust is not None and model.join(signed.SIGNATURE_PATH).exists():
        signed.require(model, trust)  # re-signing vouches only for what verified before
    signed.sign(model, signer)
    if args.json:
        _print_json(
            {
                "url": model.url,
                "signed_by": signer.describe(),
                "signature": model.join(signed.SIGNATURE_PATH).url,
            }
        )
    else:
        print(f"signed {model.url} by {signer.describe()}: {model.join(signed.SIGNATURE_PATH).url}")
    return 0
