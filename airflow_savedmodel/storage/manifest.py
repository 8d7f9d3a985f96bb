"""Integrity manifests kept in assets.extra/ (the directory SavedModel leaves to higher-level tools).

A manifest lists every file of the model (path, size, crc32c), where it came from, when, which
version of this package wrote it and the model's fingerprint. ``verify`` checks a model
against it; two models with the same file list have the same content.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import __version__, location, schemas
from airflow_savedmodel.errors import FormatError, MissingFileError
from airflow_savedmodel.format.model import ASSETS_EXTRA_DIR, FINGERPRINT_PB
from airflow_savedmodel.location import file_crc32c, to_hex

MAX_MANIFEST_BYTES = 64 << 20  # a manifest lists files: tens of bytes each

MANIFEST_PATH = f"{ASSETS_EXTRA_DIR}/airflow_savedmodel_manifest.json"
SIGNATURE_PATH = "model.sig"  # the version's OMS signature (storage/signed.py)
SCHEMA = "airflow-savedmodel/manifest/v1"


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    crc32c: str  # 8 hex digits


@dataclass
class Manifest:
    files: list[FileEntry]
    source: str = ""
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )
    tool_version: str = __version__
    fingerprint: str | None = None

    def content_key(self) -> tuple[tuple[str, int, str], ...]:
        """What identifies the content: every file's path, size and checksum (see :func:`content_key`)."""
        return content_key(self.files)

    def shape(self) -> frozenset[tuple[str, int]]:
        """Paths and sizes of the identifying files: equal content needs an equal shape."""
        return shape_of({f.path: f.size for f in self.files})

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def created_at(self) -> datetime.datetime | None:
        try:
            return datetime.datetime.fromisoformat(self.created)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> Manifest:
        try:
            files = [FileEntry(str(f["path"]), int(f["size"]), str(f["crc32c"])) for f in doc["files"]]
            return cls(
                files=files,
                source=str(doc.get("source", "")),
                created=str(doc.get("created", "")),
                tool_version=str(doc.get("tool_version", "")),
                fingerprint=doc.get("fingerprint"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"manifest is malformed: {exc}", where) from None


def identifies(path: str) -> bool:
    """Whether a model file is part of what identifies its content.

    fingerprint.pb is not: besides hashes of the other files it carries a random uuid, so an
    unchanged model exported twice would otherwise never be recognised as the same. Nor are the
    manifest and the signature, which describe the others.
    """
    return path not in (FINGERPRINT_PB, MANIFEST_PATH, SIGNATURE_PATH)


def content_key(files: list[FileEntry]) -> tuple[tuple[str, int, str], ...]:
    """Path, size and crc32c of every file that defines what a model computes and holds."""
    return tuple(sorted((f.path, f.size, f.crc32c) for f in files if identifies(f.path)))


def shape_of(sizes: dict[str, int]) -> frozenset[tuple[str, int]]:
    """Paths and sizes of the identifying files among ``{path: size}``."""
    return frozenset((path, size) for path, size in sizes.items() if identifies(path))


def source_entries(
    fs: AbstractFileSystem, model_path: str, infos: dict[str, dict[str, Any]] | None = None
) -> list[FileEntry]:
    """Manifest entries of a model where it lies, using the crc32c the store reports (GCS) and
    reading only the files it does not report one for."""
    infos = location.relative_infos(fs, model_path) if infos is None else infos
    out = []
    for rel, info in sorted(infos.items()):
        if rel == MANIFEST_PATH:
            continue
        crc = location.reported_crc32c(info)
        size = int(info.get("size") or 0)
        if crc is None:
            crc, size = file_crc32c(fs, location.join(model_path, rel))
        out.append(FileEntry(rel, size, to_hex(crc)))
    return out


def read(fs: AbstractFileSystem, model_path: str, size: int | None = None) -> Manifest | None:
    """The manifest of the model at ``model_path``, None when it has none. ``size``: the
    manifest's size from a listing the caller has just made (not asked of the store again)."""
    path = location.join(model_path, MANIFEST_PATH)
    try:
        raw = location.read_file(fs, path, root=model_path, limit=MAX_MANIFEST_BYTES, size=size)
    except MissingFileError:
        return None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"manifest is not JSON: {exc}", path) from None
    schemas.check(doc, schemas.MANIFEST, "manifest", location.url_of(fs, path))
    for entry in doc["files"]:
        name = entry["path"]
        if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
            raise FormatError(
                f"manifest: file path {name!r} leaves the model directory", location.url_of(fs, path)
            )
    return Manifest.from_json(doc, path)


def write(fs: AbstractFileSystem, model_path: str, manifest: Manifest) -> None:
    location.makedirs(fs, location.join(model_path, ASSETS_EXTRA_DIR))
    fs.pipe_file(location.join(model_path, MANIFEST_PATH), json.dumps(manifest.to_json(), indent=1).encode())


def scan(fs: AbstractFileSystem, model_path: str, source: str = "") -> Manifest:
    """Build a manifest by reading every file of a model (the manifest itself excluded)."""
    files = []
    for rel in location.relative_files(fs, model_path):
        if rel == MANIFEST_PATH:
            continue
        crc, size = file_crc32c(fs, location.join(model_path, rel))
        files.append(FileEntry(rel, size, to_hex(crc)))
    return Manifest(files=files, source=source, fingerprint=fingerprint_of(fs, model_path))


def fingerprint_of(fs: AbstractFileSystem, model_path: str) -> str | None:
    """The model's singleprint (graph/signature/object graph/checkpoint hashes), from fingerprint.pb."""
    from airflow_savedmodel.format.model import read_fingerprint

    try:
        fp = read_fingerprint(fs, model_path)
    except FormatError:
        return None
    if fp is None:
        return None
    return f"{fp.graph_def_program_hash}/{fp.signature_def_hash}/{fp.saved_object_graph_hash}/{fp.checkpoint_hash}"


@dataclass
class VerifyResult:
    url: str
    ok: bool
    problems: list[str]
    manifest: Manifest | None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "problems": self.problems,
            "files": len(self.manifest.files) if self.manifest else 0,
        }


def check(
    fs: AbstractFileSystem,
    model_path: str,
    manifest: Manifest,
    deep: bool = True,
    sizes: Mapping[str, int] | None = None,
) -> list[str]:
    """Differences between the files at ``model_path`` and ``manifest`` (sizes, and crc32c when
    deep). ``sizes``: ``{relative path: size}`` of the files there, from a listing the caller
    has just made (else they are listed)."""
    problems = []
    if sizes is None:
        sizes = location.relative_sizes(fs, model_path)
    present = {p: s for p, s in sizes.items() if p != MANIFEST_PATH}
    for entry in manifest.files:
        size = present.pop(entry.path, None)
        if size is None:
            problems.append(f"{entry.path}: missing")
        elif size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, manifest says {entry.size}")
        elif deep:
            crc, _ = file_crc32c(fs, location.join(model_path, entry.path))
            if to_hex(crc) != entry.crc32c:
                problems.append(f"{entry.path}: crc32c {to_hex(crc)}, manifest says {entry.crc32c}")
    problems += [f"{p}: not in the manifest" for p in sorted(present)]
    return problems


def verify(
    url: str | location.Location,
    storage_options: dict[str, Any] | None = None,
    deep: bool = True,
    fs: AbstractFileSystem | None = None,
) -> VerifyResult:
    """Check a model against the manifest in its assets.extra/."""
    fs, path = location.resolve(url, storage_options, fs)
    manifest = read(fs, path)
    if manifest is None:
        raise MissingFileError(
            "model has no manifest; publish or copy it with this tool first",
            location.join(path, MANIFEST_PATH),
        )
    problems = check(fs, path, manifest, deep)
    return VerifyResult(location.url_of(fs, path), not problems, problems, manifest)
