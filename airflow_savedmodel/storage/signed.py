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


def _range_digest(fs: Any, path: str, start: int, end: int | None, hash_type: str) -> tuple[str, int]:
    """The hex digest of bytes ``start`` to ``end`` (None: to the end) of one file, and the
    offset its read reached (the file's size when read to the end)."""
    h = new_hash(hash_type)
    pos = start
    if is_local(fs):
        fd = os.open(fs._strip_protocol(path), os.O_RDONLY)
        try:
            buffer = memoryview(bytearray(LOCAL_CHUNK * 4))
            while end is None or pos < end:
                n = os.preadv(fd, [buffer if end is None else buffer[: min(len(buffer), end - pos)]], pos)
                if not n:
                    break
                # The disk reads the next block while this one is hashed (a cold file otherwise
                # waits for each read, then for each hash).
                os.posix_fadvise(fd, pos + n, len(buffer), os.POSIX_FADV_WILLNEED)
                h.update(buffer[:n])
                pos += n
        finally:
            os.close(fd)
        return h.hexdigest(), pos
    fs.invalidate_cache(path.rsplit("/", 1)[0])
    with fs.open(path, "rb") as handle:
        handle.seek(start)
        while end is None or pos < end:
            block = handle.read(CHUNK if end is None else min(CHUNK, end - pos))
            if not block:
                break
            h.update(block)
            pos += len(block)
    return h.hexdigest(), pos


def _workers(fs: Any, tasks: int) -> int:
    """Threads for hashing: two per core on a local disk (the hash is the work; the second
    thread reads while the first hashes, when the files are not in the page cache), eight on
    a store (the round trips are). Each holds one 4 MB buffer."""
    return max(1, min(tasks, 2 * (os.cpu_count() or 2) if is_local(fs) else 8))


def resource_names(rel: str, ranges: list[tuple[int, int, str]], shard_size: int | None) -> dict[str, str]:
    """A file's resources in a statement: ``{rel: digest}`` (files), or ``{rel:start:end: digest}``
    per shard (an empty file has none)."""
    if shard_size is None:
        return {rel: ranges[0][2]}
    return {f"{rel}:{start}:{end}": digest for start, end, digest in ranges if end > start}


def resources(per_file: Mapping[str, list[tuple[int, int, str]]], shard_size: int | None) -> dict[str, str]:
    """Every file's resources, from ``{rel: [(start, end, digest)]}``."""
    out: dict[str, str] = {}
    for rel, ranges in per_file.items():
        out.update(resource_names(rel, ranges, shard_size))
    return out


def digests(
    model: Location, infos: Mapping[str, Any] | None = None, shard_size: int | None = None
) -> dict[str, str]:
    """The resources of every file the signature covers (``{name: sha256 hex}``; with
    ``shard_size``, a name per shard), each file (or shard) read once, on as many threads as
    there are cores (local) or eight (a store)."""
    infos = location.relative_infos(model.fs, model.path) if infos is None else infos
    tasks = []
    for rel in sorted(r for r in infos if in_scope(r)):
        size = int(infos[rel].get("size") or 0)
        spans = location.RangeDigests(hashlib.sha256, shard_size).ranges(size)
        tasks += [(rel, start, end) for start, end in spans]

    def one(task: tuple[str, int, int]) -> tuple[int, int, str]:
        rel, start, end = task
        digest, _ = _range_digest(model.fs, location.join(model.path, rel), start, end, "sha256")
        return start, end, digest

    per_file: dict[str, list[tuple[int, int, str]]] = {}
    with ThreadPoolExecutor(_workers(model.fs, len(tasks))) as pool:
        for (rel, _, _), done in zip(tasks, pool.map(one, tasks), strict=True):
            per_file.setdefault(rel, []).append(done)
    return resources(per_file, shard_size)


def statement_for(
    model: Location,
    file_digests: Mapping[str, str],
    subject: str | None = None,
    shard_size: int | None = None,
) -> bytes:
    """The statement signing ``file_digests`` (resource names: files, or ``file:start:end``
    shards with ``shard_size``) for the model at ``model``, named ``subject`` (informational;
    default the model directory's name)."""
    scoped = {
        name: d
        for name, d in file_digests.items()
        if in_scope(oms.split_shard(name)[0] if shard_size is not None else name)
    }
    return oms.statement(subject or model.name or "model", scoped, UNSIGNED, shard_size=shard_size)


def sign(model: Location, signer: Signer, file_digests: Mapping[str, str] | None = None) -> bytes:
    """Write ``model.sig`` for the model as it is now (digests computed unless given); the bundle.
    A published version's integrity manifest is rewritten to list the new signature, so the
    version stays complete."""
    if file_digests is None:
        file_digests = digests(model, shard_size=signer.shard_size)
    data = signer.sign(statement_for(model, file_digests, shard_size=signer.shard_size))
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
    for rel in sorted(set(signed) - set(present)):
        findings.append(("file-missing", rel, "signed, but no longer in the model"))
    for rel in sorted(set(present) - set(signed)):
        if ser.method == "shards" and int(present[rel].get("size") or 0) == 0:
            continue  # shards omit empty files
        findings.append(("file-not-signed", rel, "in the model, but not covered by the signature"))
    both = sorted(set(signed) & set(present))
    tasks: list[tuple[str, int, int | None]] = []
    for rel in both:
        parts = signed[rel]
        if ser.method != "shards":
            tasks.append((rel, 0, None))
            continue
        ends = [0] + [end for _, end, _ in parts[:-1]]
        gap = next((end for (start, _, _), end in zip(parts, ends, strict=True) if start != end), None)
        size = int(present[rel].get("size") or 0)
        if gap is not None:  # shards are consecutive from 0, as a signer cuts them
            findings.append(("file-changed", rel, f"shards of this file do not start at {gap}"))
        elif size != parts[-1][1]:
            findings.append(("file-changed", rel, f"{size} bytes, signed as {parts[-1][1]}"))
        else:
            tasks += [(rel, start, end) for start, end, _ in parts]

    def one(task: tuple[str, int, int | None]) -> str:
        rel, start, end = task
        return _range_digest(model.fs, location.join(model.path, rel), start, end, ser.hash_type)[0]

    wanted = {(rel, start): digest for rel, parts in signed.items() for start, _, digest in parts}
    changed: set[str] = set()
    with ThreadPoolExecutor(_workers(model.fs, len(tasks))) as pool:
        for (rel, start, _), got in zip(tasks, pool.map(one, tasks), strict=True):
            if got != wanted[(rel, start)] and rel not in changed:
                changed.add(rel)
                findings.append(
                    ("file-changed", rel, f"content changed since it was signed ({ser.hash_type} differs)")
                )
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
