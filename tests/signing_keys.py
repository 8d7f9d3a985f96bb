"""Keys and certificates made at test time for the signing tests: EC key pairs as PEM files, and
a root CA -> intermediate -> code-signing leaf chain (the certificate method)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _oms_dir() -> Path:
    """The OMS spec's schemas and test vectors: ``../shared/oms-v1.0`` beside the checkout (or
    $OMS_SPEC_DIR; a clone elsewhere on this machine finds /work/shared)."""
    candidates = [
        Path(os.environ.get("OMS_SPEC_DIR", "")),
        Path(__file__).resolve().parents[2] / "shared" / "oms-v1.0",
        Path("/work/shared/oms-v1.0"),
    ]
    return next((c for c in candidates if str(c) != "." and (c / "schemas").is_dir()), candidates[1])


OMS_DIR = _oms_dir()


def schema_validator(name: str) -> Any:
    """A validator for one of the OMS v1.0 schemas (``statement.schema.json`` ...), with the
    others registered for its references."""
    import json

    import jsonschema
    from referencing import Registry, Resource

    schemas = {p.name: json.loads(p.read_text()) for p in (OMS_DIR / "schemas" / "v1.0").glob("*.json")}
    assert len(schemas) == 4, f"the OMS schemas are read from {OMS_DIR}"
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def private_pem(self) -> bytes:
        return self.private.read_bytes()


def key_pair(
    directory: Path, name: str, curve: ec.EllipticCurve | None = None, password: bytes | None = None
) -> KeyPair:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private = directory / f"{name}.key.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclass(frozen=True)
class Chain:
    root: Path  # the root CA certificate (what a deployment trusts)
    leaf_key: Path
    chain: Path  # leaf then intermediate (what the signer presents)
    leaf_chain_only: Path  # the leaf alone (another signer's material, for mixing tests)


def certificate_chain(
    directory: Path, name: str = "ml-platform", leaf_days: tuple[int, int] = (-1, 365)
) -> Chain:
    directory.mkdir(parents=True, exist_ok=True)
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    root = _cert(f"{name} root CA", root_key, None, ca=True, days=(-1, 3650))
    mid = _cert(f"{name} signing CA", mid_key, (root, root_key), ca=True, days=(-1, 1825))
    leaf = _cert(f"{name} release signer", leaf_key, (mid, mid_key), ca=False, days=leaf_days)
    pem = serialization.Encoding.PEM
    paths = Chain(
        directory / f"{name}-root.pem",
        directory / f"{name}-leaf.key.pem",
        directory / f"{name}-chain.pem",
        directory / f"{name}-leaf.pem",
    )
    paths.root.write_bytes(root.public_bytes(pem))
    paths.leaf_key.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths.chain.write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
    paths.leaf_chain_only.write_bytes(leaf.public_bytes(pem))
    return paths


def shard_statement(model: Path, size: int) -> dict[str, Any]:
    """An OMS statement of ``model`` in the "shards" serialization (a SHA-256 per
    ``file:start:end`` range of ``size`` bytes), as a document to sign or edit."""
    import hashlib

    from airflow_savedmodel.signing import oms

    shards = {}
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        rel, data = path.relative_to(model).as_posix(), path.read_bytes()
        for start in range(0, len(data), size):
            end = min(start + size, len(data))
            shards[f"{rel}:{start}:{end}"] = hashlib.sha256(data[start:end]).hexdigest()
    names = sorted(shards)
    return {
        "_type": oms.STATEMENT_TYPE,
        "subject": [{"name": "m", "digest": {"sha256": oms.root_digest(shards[n] for n in names)}}],
        "predicateType": oms.PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": n, "digest": shards[n], "algorithm": "sha256"} for n in names],
            "serialization": {
                "method": "shards",
                "hash_type": "sha256",
                "shard_size": size,
                "allow_symlinks": False,
            },
        },
    }
