"""Signed versions: the OMS bundle at ``<version>/model.sig`` covers every file of the version
but itself and the integrity manifest (which is written last, as the completion marker, after
the signature); checking one recomputes each file's digest with one streamed read and names
every file that differs from what was signed.

A check answers with findings (the codes validate reports); :func:`require` turns a failed check
into the typed error the gates (promote, rollback, mirror, rollout) refuse with.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.errors import (
    FormatError,
    MissingFileError,
    SavedModelError,
    SignatureError,
    SignatureInvalidError,
    SignatureMissingError,
    SignatureUntrustedError,
    SignedContentError,
)
from airflow_savedmodel.format.crc import crc32c
from airflow_savedmodel.location import CHUNK, LOCAL_CHUNK, Location, is_local, to_hex
from airflow_savedmodel.signing import oms
from airflow_savedmodel.signing.keys import Signer, Trust
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage.manifest import MANIFEST_PATH, SIGNATURE_PATH

UNSIGNED = (MANIFEST_PATH, SIGNATURE_PATH)  # recorded as the bundle's ignore_paths
MAX_TRUST_BYTES = 1 << 20


def in_scope(rel: str) -> bool:
    """Whether a file of a version is covered by its signature."""
    return not oms.is_ignored(rel, UNSIGNED)


def new_hash(hash_type: str = "sha256") -> Any:
    return hashlib.blake2b() if hash_type == "blake2b" else hashlib.sha256()


def _file_digests(fs: Any, path: str, ranges: list[tuple[int, int]], hash_type: str) -> tuple[list[str], int]:
    """Hex digests of byte ranges of one file (``end`` -1: to the end), read once, in order;
    and the file's size."""
    out = []
    pos = 0
    if is_local(fs):
        fd = os.open(fs._strip_protocol(path), os.O_RDONLY)
        read = lambda n: os.pread(fd, n, pos)  # noqa: E731
        chunk = LOCAL_CHUNK * 4
    else:
        fs.invalidate_cache(path.rsplit("/", 1)[0])
        handle = fs.open(path, "rb")
        read = handle.read
        chunk = CHUNK
    try:
        for start, end in ranges:
            if start != pos:  # ranges are consecutive from 0: a gap means the bundle is odd
                raise FormatError(f"shards of this file do not start at {pos}", location.url_of(fs, path))
            h = new_hash(hash_type)
            while end < 0 or pos < end:
                block = read(chunk if end < 0 else min(chunk, end - pos))
                if not block:
                    break
                h.update(block)
                pos += len(block)
            out.append(h.hexdigest())
        while block := read(chunk):  # what follows the last range still counts toward the size
            pos += len(block)
    finally:
        if is_local(fs):
            os.close(fd)
        else:
            handle.close()
    return out, pos


def digests(model: Location, infos: Mapping[str, Any] | None = None, concurrency: int = 8) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of every file the signature covers, each read once."""
    infos = location.relative_infos(model.fs, model.path) if infos is None else infos
    names = sorted(rel for rel in infos if in_scope(rel))

    def one(rel: str) -> str:
        return _file_digests(model.fs, location.join(model.path, rel), [(0, -1)], "sha256")[0][0]

    with ThreadPoolExecutor(max(1, min(concurrency, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def statement_for(model: Location, file_digests: Mapping[str, str], subject: str | None = None) -> bytes:
    """The statement signing ``file_digests`` for the model at ``model``, named ``subject``
    (informational; default the model directory's name)."""
    scoped = {rel: d for rel, d in file_digests.items() if in_scope(rel)}
    return oms.statement(subject or model.name or "model", scoped, UNSIGNED)


def sign(model: Location, signer: Signer, file_digests: Mapping[str, str] | None = None) -> bytes:
    """Write ``model.sig`` for the model as it is now (digests computed unless given); the bundle.
    A published version's integrity manifest is rewritten to list the new signature, so the
    version stays complete."""
    data = signer.sign(statement_for(model, file_digests if file_digests is not None else digests(model)))
    model.fs.pipe_file(location.join(model.path, SIGNATURE_PATH), data)
    listed = manifests.read(model.fs, model.path)
    if listed is not None:
        entry = manifests.FileEntry(SIGNATURE_PATH, len(data), to_hex(crc32c(data)))
        listed.files = sorted(
            [f for f in listed.files if f.path != SIGNATURE_PATH] + [entry], key=lambda f: f.path
        )
        manifests.write(model.fs, model.path, listed)
    return data


def signed_by(model: Location, signer: Signer) -> bool:
    """Whether ``model`` carries a signature ``signer`` made (the signature alone is checked,
    not the files: the gates do that)."""
    path = location.join(model.path, SIGNATURE_PATH)
    try:
        raw = location.read_file(model.fs, path, root=model.path, limit=oms.MAX_BUNDLE_BYTES)
        return signer.signed(oms.parse_bundle(raw, location.url_of(model.fs, path)))
    except SavedModelError:
        return False


def load_trust(source: str | Location, storage_options: dict[str, Any] | None = None) -> Trust:
    """The trusted signers in a PEM file (PUBLIC KEY and CERTIFICATE blocks), local or remote."""
    where = location.resolve(source, storage_options)
    raw = location.read_file(where.fs, where.path, limit=MAX_TRUST_BYTES)
    return Trust.from_pem(raw, where.url)


@dataclass
class SignatureCheck:
    """The verdict on a model's signature: ``signer`` (who signed, when the signature verified)
    and ``findings``: ``(code, file, message)``, empty when the model is what was signed."""

    url: str
    signer: str | None = None
    findings: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "signer": self.signer,
            "findings": [{"code": c, "file": f, "message": m} for c, f, m in self.findings],
        }

    def error(self) -> SignatureError:
        """The failed check as one typed error naming every finding."""
        code = self.findings[0][0]
        text = "; ".join(f"{f}: {m}" if f != self.url else m for _, f, m in self.findings[:20])
        more = f" (and {len(self.findings) - 20} more)" if len(self.findings) > 20 else ""
        if code == "signature-missing":
            return SignatureMissingError(text, self.url)
        if code.startswith("file-"):
            return SignedContentError(f"differs from what was signed: {text}{more}", self.url, self.findings)
        if code == "signature-untrusted":
            return SignatureUntrustedError(text, self.url)
        return SignatureInvalidError(text, self.url)


def check(model: Location, trust: Trust) -> SignatureCheck:
    """Verify ``model`` against its ``model.sig`` and ``trust``: the signature (by a trusted
    signer, over the statement), then every file (none added, changed or removed)."""
    result = SignatureCheck(model.url)
    bundle_path = location.join(model.path, SIGNATURE_PATH)
    bundle_url = location.url_of(model.fs, bundle_path)
    try:
        raw = location.read_file(model.fs, bundle_path, root=model.path, limit=oms.MAX_BUNDLE_BYTES)
    except MissingFileError:
        result.findings.append(
            ("signature-missing", bundle_url, f"no signature ({SIGNATURE_PATH}) in the model")
        )
        return result
    except FormatError as exc:
        result.findings.append(("signature-invalid", bundle_url, exc.problem))
        return result
    try:
        parsed = oms.parse_bundle(raw, bundle_url)
        result.signer = trust.verify(parsed, bundle_url)
        statement = oms.parse_statement(parsed, bundle_url)
    except SignatureError as exc:
        result.findings.append((exc.code, bundle_url, exc.problem))
        return result
    except SavedModelError as exc:
        result.findings.append(("signature-invalid", bundle_url, exc.problem))
        return result
    result.findings += _content_findings(model, statement)
    if result.findings:
        result.signer = None
    return result


def _content_findings(model: Location, statement: oms.Statement) -> list[tuple[str, str, str]]:
    ser = statement.serialization
    present = {
        rel: info
        for rel, info in location.relative_infos(model.fs, model.path).items()
        # The signature and our integrity manifest (written when the version is published,
        # also for a model another tool signed) are never part of what is signed.
        if rel not in UNSIGNED and not oms.is_ignored(rel, ser.ignore_paths)
    }
    signed = statement.files()
    findings: list[tuple[str, str, str]] = []

    def one(rel: str) -> tuple[str, str, str] | None:
        parts = signed[rel]
        ranges = [(start, end) for start, end, _ in parts]
        try:
            got, size = _file_digests(model.fs, location.join(model.path, rel), ranges, ser.hash_type)
        except FormatError as exc:
            return ("file-changed", rel, exc.problem)
        if ser.method == "shards" and size != parts[-1][1]:
            return ("file-changed", rel, f"{size} bytes, signed as {parts[-1][1]}")
        if got != [digest for _, _, digest in parts]:
            return ("file-changed", rel, f"content changed since it was signed ({ser.hash_type} differs)")
        return None

    for rel in sorted(set(signed) - set(present)):
        findings.append(("file-missing", rel, "signed, but no longer in the model"))
    for rel in sorted(set(present) - set(signed)):
        if ser.method == "shards" and int(present[rel].get("size") or 0) == 0:
            continue  # shards omit empty files
        findings.append(("file-not-signed", rel, "in the model, but not covered by the signature"))
    both = sorted(set(signed) & set(present))
    with ThreadPoolExecutor(max(1, min(8, len(both)))) as pool:
        findings += [f for f in pool.map(one, both) if f is not None]
    return findings


def add_to_report(report: Any, result: SignatureCheck) -> None:
    """A signature check's findings in a validate report (errors, each naming its file)."""
    for code, file, message in result.findings:
        report.add("error", code, message, file=file)
    if "signature" not in report.checks:
        report.checks.append("signature")


def require(model: Location, trust: Trust | None) -> str | None:
    """Refuse a model that does not verify under ``trust`` (None: signatures not required);
    who signed it."""
    if trust is None:
        return None
    result = check(model, trust)
    if not result.ok:
        raise result.error()
    return result.signer
