"""The bytes of an OMS v1.0 signature: an in-toto statement listing every file of a model with
its digest, wrapped in a DSSE envelope, inside a Sigstore bundle (JSON).

Building a statement and a bundle, and reading them back with every field checked: a bundle
from a bucket is hostile input, so each malformed part is a typed error naming the bundle, not
a KeyError, and nothing is decoded before its size is known to be bounded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from airflow_savedmodel.errors import FormatError, UnsupportedFormatError

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
OLD_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"  # 0.2.0's layout; refused, by name
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
DEFAULT_IGNORED = (".git", ".gitignore", ".gitattributes", ".github")  # always excluded (top level)

# Digest lengths (bytes) of the hash types a verifier here recomputes; blake3 is in the OMS
# registry but not in the standard library, so its bundles are refused by name.
DIGEST_BYTES = {"sha256": 32, "blake2b": 64}
MAX_BUNDLE_BYTES = 32 << 20  # a bundle names files (~150 bytes each): room for 200k of them
MAX_CERTIFICATES = 10

_B64 = {"type": "string", "minLength": 1}
_BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mediaType", "verificationMaterial", "dsseEnvelope"],
    "properties": {
        "mediaType": {"type": "string", "pattern": "^application/vnd\\.dev\\.sigstore\\.bundle"},
        "verificationMaterial": {
            "type": "object",
            "properties": {
                "publicKey": {
                    "type": "object",
                    "properties": {"hint": {"type": "string"}, "rawBytes": _B64},
                },
                "x509CertificateChain": {
                    "type": "object",
                    "required": ["certificates"],
                    "properties": {
                        "certificates": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_CERTIFICATES,
                            "items": {
                                "type": "object",
                                "required": ["rawBytes"],
                                "properties": {"rawBytes": _B64},
                            },
                        }
                    },
                },
                "certificate": {"type": "object", "required": ["rawBytes"], "properties": {"rawBytes": _B64}},
                "tlogEntries": {"type": "array"},
            },
        },
        "dsseEnvelope": {
            "type": "object",
            "required": ["payload", "payloadType", "signatures"],
            "properties": {
                "payload": _B64,
                "payloadType": {"type": "string"},
                "signatures": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["sig"],
                        "properties": {"sig": _B64, "keyid": {"type": ["string", "null"]}},
                    },
                },
            },
        },
    },
}
_STATEMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "properties": {
        "_type": {"const": STATEMENT_TYPE},
        "subject": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "digest"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "digest": {
                        "type": "object",
                        "required": ["sha256"],
                        "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                    },
                },
            },
        },
        "predicateType": {"type": "string"},
        "predicate": {
            "type": "object",
            "required": ["resources", "serialization"],
            "properties": {
                "resources": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "digest", "algorithm"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "digest": {"type": "string", "pattern": "^[0-9a-f]+$"},
                            "algorithm": {"type": "string"},
                        },
                    },
                },
                "serialization": {
                    "type": "object",
                    "required": ["method", "hash_type", "allow_symlinks"],
                    "properties": {
                        "method": {"enum": ["files", "shards"]},
                        "hash_type": {"type": "string"},
                        "allow_symlinks": {"type": "boolean"},
                        "shard_size": {"type": "integer", "minimum": 1},
                        "ignore_paths": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
_SHARD = re.compile(r"^(.+):(\d+):(\d+)$")


@dataclass(frozen=True)
class Serialization:
    """How the signer enumerated and hashed the files (the predicate's ``serialization``)."""

    method: str  # "files" or "shards"
    hash_type: str
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    shard_size: int | None = None


@dataclass(frozen=True)
class Statement:
    """What a bundle says was signed: ``resources`` maps each file (or ``file:start:end`` shard)
    to its hex digest."""

    subject: str
    root_digest: str
    resources: dict[str, str]
    serialization: Serialization

    def files(self) -> dict[str, list[tuple[int, int, str]]]:
        """``{file: [(start, end, digest), ...]}``: for the files method one entry per file with
        ``end`` -1 (the whole file)."""
        out: dict[str, list[tuple[int, int, str]]] = {}
        for name, digest in self.resources.items():
            if self.serialization.method == "shards":
                path, start, end = split_shard(name)
                out.setdefault(path, []).append((start, end, digest))
            else:
                out[name] = [(0, -1, digest)]
        return {path: sorted(parts) for path, parts in out.items()}


@dataclass(frozen=True)
class Bundle:
    """A parsed OMS bundle: who may have signed (the verification material) and what."""

    method: str  # "key", "certificate" or "sigstore"
    key_hint: str | None
    raw_public_key: bytes | None  # older bundles carry the key instead of its hint
    certificates: tuple[bytes, ...]  # DER, the signing certificate first
    payload_type: str
    payload: bytes
    signature: bytes


def canonical_name(name: str, where: str) -> str:
    """A resource name as OMS writes it (relative, ``/``-separated, no ``.``/``..``/empty parts)."""
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\x00" in name:
        raise FormatError(f"signed file name {name!r} is not a plain path inside the model", where)
    return name


def split_shard(name: str) -> tuple[str, int, int]:
    """``file:start:end`` -> (file, start, end); the range is the last two colon-separated numbers."""
    match = _SHARD.match(name)
    if not match or int(match.group(2)) >= int(match.group(3)):
        raise FormatError(f"shard name {name!r} is not FILE:START:END with START < END", name)
    return match.group(1), int(match.group(2)), int(match.group(3))


def is_ignored(rel: str, ignore_paths: Iterable[str]) -> bool:
    """Whether a file is outside the signing scope: below a default-ignored top-level name or
    at (or below) one of ``ignore_paths`` (exact relative paths, no globs)."""
    if rel.split("/", 1)[0] in DEFAULT_IGNORED:
        return True
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in ignore_paths)


def root_digest(digests: Iterable[str]) -> str:
    """SHA-256 over the raw bytes of every resource digest, in resource order."""
    h = hashlib.sha256()
    for digest in digests:
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(
    subject: str, digests: Mapping[str, str], ignore_paths: Iterable[str] = (), shard_size: int | None = None
) -> bytes:
    """The in-toto statement (JSON bytes) signing ``{file: sha256 hex}`` with the files method,
    or, with ``shard_size``, ``{file:start:end: sha256 hex}`` with the shards method."""
    if not digests:
        raise FormatError("nothing to sign: the model has no file in the signing scope", subject)
    if shard_size is not None and shard_size < 1:
        raise FormatError(f"shard size must be a positive number of bytes, not {shard_size}", subject)
    names = sorted(digests)
    serialization: dict[str, Any] = {
        "method": "files" if shard_size is None else "shards",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": sorted(set(DEFAULT_IGNORED) | set(ignore_paths)),
    }
    if shard_size is not None:
        serialization["shard_size"] = shard_size
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject, "digest": {"sha256": root_digest(digests[n] for n in names)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": n, "digest": digests[n], "algorithm": "sha256"} for n in names],
            "serialization": serialization,
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def bundle(payload: bytes, signature: bytes, material: Mapping[str, Any]) -> bytes:
    """The Sigstore bundle (JSON bytes) around a DSSE envelope of ``payload``."""
    doc = {
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": dict(material),
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(doc, indent=1).encode()


def _b64(text: str, what: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not base64", where) from None


def _json(raw: bytes, what: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise FormatError(f"{what} is not JSON: {exc}", where) from None


def _schema_error(doc: Any, schema: dict[str, Any], what: str, where: str) -> None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise FormatError(f"{what}: {error.message} (at {at})", where)


def parse_bundle(raw: bytes, where: str) -> Bundle:
    """A bundle's parts, every one checked (its statement is read by :func:`parse_statement`)."""
    if len(raw) > MAX_BUNDLE_BYTES:
        raise FormatError(f"signature bundle is {len(raw)} bytes, more than {MAX_BUNDLE_BYTES}", where)
    doc = _json(raw, "signature bundle", where)
    _schema_error(doc, _BUNDLE_SCHEMA, "signature bundle", where)
    material = doc["verificationMaterial"]
    envelope = doc["dsseEnvelope"]
    if len(envelope["signatures"]) != 1:
        raise FormatError(f"signature bundle has {len(envelope['signatures'])} signatures, not one", where)
    certificates: tuple[bytes, ...] = ()
    hint = raw_key = None
    if "x509CertificateChain" in material:
        method = "certificate"
        certificates = tuple(
            _b64(c["rawBytes"], "a certificate", where)
            for c in material["x509CertificateChain"]["certificates"]
        )
    elif "certificate" in material:
        method = "sigstore"
        if not material.get("tlogEntries"):
            raise FormatError("signature bundle of the sigstore method has no transparency log entry", where)
        certificates = (_b64(material["certificate"]["rawBytes"], "the certificate", where),)
    elif "publicKey" in material:
        method = "key"
        hint = material["publicKey"].get("hint") or None
        if "rawBytes" in material["publicKey"]:
            raw_key = _b64(material["publicKey"]["rawBytes"], "the public key", where)
        if hint is None and raw_key is None:
            raise FormatError("signature bundle's public key has neither a hint nor its bytes", where)
    else:
        raise FormatError("signature bundle has no verification material (key or certificate)", where)
    return Bundle(
        method=method,
        key_hint=hint,
        raw_public_key=raw_key,
        certificates=certificates,
        payload_type=envelope["payloadType"],
        payload=_b64(envelope["payload"], "the envelope's payload", where),
        signature=_b64(envelope["signatures"][0]["sig"], "the signature", where),
    )


def parse_statement(parsed: Bundle, where: str) -> Statement:
    """The signed statement of a bundle whose signature was verified, every field checked."""
    if parsed.payload_type != PAYLOAD_TYPE:
        raise FormatError(f"envelope payload type is {parsed.payload_type!r}, not {PAYLOAD_TYPE!r}", where)
    doc = _json(parsed.payload, "signed statement", where)
    if isinstance(doc, dict) and doc.get("predicateType") not in (None, PREDICATE_TYPE):
        kind = doc["predicateType"]
        old = " (model_signing 0.2's layout; re-sign the model)" if kind == OLD_PREDICATE_TYPE else ""
        raise FormatError(f"signed statement has predicate type {kind!r}, not {PREDICATE_TYPE!r}{old}", where)
    _schema_error(doc, _STATEMENT_SCHEMA, "signed statement", where)
    ser = doc["predicate"]["serialization"]
    hash_type = ser["hash_type"]
    if hash_type not in DIGEST_BYTES:
        raise UnsupportedFormatError(
            f"files hashed with {hash_type!r}; this verifier knows sha256 and blake2b", where
        )
    method = ser["method"]
    if (method == "shards") != ("shard_size" in ser):
        raise FormatError("serialization: shard_size goes with the shards method, and only with it", where)
    ignore = tuple(ser.get("ignore_paths") or ())
    for path in ignore:
        if path.startswith("/") or ".." in path.split("/") or any(c in path for c in "*?["):
            raise FormatError(f"ignore path {path!r} is not an exact relative path", where)
    resources: dict[str, str] = {}
    names = []
    # OMS v1.0 labels every shard's digest with the hash type; the reference implementation
    # (model_signing 1.1.1) labels it "<hash type>-sharded-<shard size>": both name the same digest.
    # A shard size may arrive as 100.0 (the reference writes JSON numbers through a protobuf
    # Struct, all doubles); the schema takes it as the integer it is.
    shard_size = int(ser["shard_size"]) if method == "shards" else None
    labels = {hash_type} | ({f"{hash_type}-sharded-{shard_size}"} if method == "shards" else set())
    for item in doc["predicate"]["resources"]:
        name, digest = item["name"], item["digest"]
        if item["algorithm"] not in labels:
            raise FormatError(
                f"{name}: digest algorithm {item['algorithm']!r}, serialization says {hash_type!r}", where
            )
        if len(digest) != 2 * DIGEST_BYTES[hash_type]:
            raise FormatError(
                f"{name}: a {hash_type} digest has {2 * DIGEST_BYTES[hash_type]} hex digits, not {len(digest)}",
                where,
            )
        file = split_shard(name)[0] if method == "shards" else name
        canonical_name(file, where)
        if posixpath.normpath(file) != file:
            raise FormatError(f"signed file name {file!r} is not normalized", where)
        if name in resources:
            raise FormatError(f"{name}: listed twice", where)
        resources[name] = digest
        names.append(name)
    # OMS sorts resources by name; the reference implementation (1.1.1) sorts shards by file,
    # then by offset (``w:100:200`` before ``w:1000:1100``). Either order is taken.
    by_offset = method == "shards" and names == sorted(names, key=lambda n: split_shard(n)[:2])
    if names != sorted(names) and not by_offset:
        raise FormatError("signed resources are not sorted by name", where)
    return Statement(
        subject=doc["subject"][0]["name"],
        root_digest=doc["subject"][0]["digest"]["sha256"],
        resources=resources,
        serialization=Serialization(
            method=method,
            hash_type=hash_type,
            allow_symlinks=bool(ser["allow_symlinks"]),
            ignore_paths=ignore,
            shard_size=shard_size,
        ),
    )
