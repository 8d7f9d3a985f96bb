"""The one table of what each filesystem scheme can do: its entries and aliases, and proof that no
other module keeps a list of schemes of its own (adding a backend is one entry in schemes.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import fsspec

from airflow_savedmodel import schemes

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_savedmodel"
KNOWN = {name for scheme in schemes.SCHEMES for name in scheme.names}


def test_aliases_share_their_schemes_entry() -> None:
    assert schemes.of("gcs") is schemes.of("gs") and schemes.of("GS") is schemes.of("gs")
    assert schemes.of("s3a") is schemes.of("s3n") is schemes.of("s3")
    assert schemes.canonical("s3n") == "s3" and schemes.canonical("abfs") == "abfs"
    assert schemes.of("abfs") is schemes.UNKNOWN and not schemes.UNKNOWN.object_store
    assert schemes.of_url("/tmp/model").local and schemes.of_url("gcs://b/m").claim == "generation"
    assert schemes.of_fs(fsspec.filesystem("file")).local
    assert schemes.of_fs(fsspec.filesystem("memory")).claim == "process"


def test_what_the_object_stores_can_do() -> None:
    gs, s3 = schemes.of("gs"), schemes.of("s3")
    for store in (gs, s3):
        assert store.object_store and store.server_side_copy and store.listing_checksums
        assert store.url_credentials_ignored and not store.local
    assert (gs.timeouts, s3.timeouts) == ("aiohttp", "botocore")
    assert (gs.conn_types, s3.conn_types) == (("google_cloud_platform",), ("aws",))
    assert s3.md5_etag and not gs.md5_etag and s3.claim == "create"


def test_console_links_for_every_alias() -> None:
    assert schemes.console_url("gcs://bucket/models/ranker/3") == (
        "https://console.cloud.google.com/storage/browser/bucket/models/ranker/3"
    )
    assert schemes.console_url("s3n://bucket/models/ranker/3/") == (
        "https://s3.console.aws.amazon.com/s3/buckets/bucket?prefix=models/ranker/3/"
    )
    assert schemes.console_url("memory://x/1") == "" and schemes.console_url(None) == ""


def private_lists(source: str) -> list[str]:
    """Literals that name schemes outside the table: an alias spelled out, or a tuple, list or
    set of scheme names (a membership test against a private list)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in {"gcs", "s3a", "s3n"}:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(names) > 1 and len(names) == len(node.elts) and set(names) & (KNOWN - {"file"}):
                found.append(f"line {node.lineno}: {names}")
    return found


def test_no_module_keeps_a_private_list_of_schemes() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "schemes.py" and "protos" not in path.parts
        for found in [private_lists(path.read_text())]
        if found
    }
    assert offenders == {}, f"ask airflow_savedmodel.schemes instead: {offenders}"
    assert private_lists('if proto in ("gs", "gcs"): pass') != [], "the scan finds a private list"
