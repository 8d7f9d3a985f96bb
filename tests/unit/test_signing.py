"""Signed versions (OMS v1.0): what we write validates against the spec's schemas; the spec's
test vectors and hostile bundles are read or refused with the reason; a version changed after
signing, signed by an untrusted key, or with a file added or removed is refused at verify,
promote, rollback, label and mirror, and the serving config is left as it was."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import (
    FormatError,
    SignatureError,
    SignatureInvalidError,
    SignatureMissingError,
    SignatureUntrustedError,
    SignedContentError,
    StorageError,
    UnsupportedFormatError,
)
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.signing import oms
from airflow_savedmodel.signing.keys import Signer, Trust
from airflow_savedmodel.storage import list_versions, model_config, publish, signed, verify
from airflow_savedmodel.storage.mirror import mirror
from airflow_savedmodel.storage.publish import ServingTarget

from signing_keys import OMS_DIR, certificate_chain, key_pair, schema_validator, shard_statement


def make_model(root: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(root / f"model-{seed}"), [layer])


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    ours, theirs = key_pair(tmp_path / "keys", "ours"), key_pair(tmp_path / "keys", "theirs")
    return (
        Signer.from_pem(ours.private_pem),
        Trust.from_pem(ours.public.read_bytes()),
        Signer.from_pem(theirs.private_pem),
    )


def test_a_signed_version_validates_against_every_oms_schema(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    signer, _, _ = keys
    published = publish(make_model(tmp_path, 1), str(tmp_path / "serving"), signer=signer)
    bundle = json.loads((tmp_path / "serving" / "1" / "model.sig").read_bytes())
    schema_validator("bundle.schema.json").validate(bundle)
    schema_validator("envelope.schema.json").validate(bundle["dsseEnvelope"])
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    schema_validator("statement.schema.json").validate(statement)
    schema_validator("predicate.schema.json").validate(statement["predicate"])
    names = [r["name"] for r in statement["predicate"]["resources"]]
    assert (
        names
        == sorted(names)
        == [
            "fingerprint.pb",
            "saved_model.pb",
            "variables/variables.data-00000-of-00001",
            "variables/variables.index",
        ]
    )
    assert statement["subject"][0]["name"] == "serving"  # the model (its base path)
    assert statement["subject"][0]["digest"]["sha256"] == oms.root_digest(
        r["digest"] for r in statement["predicate"]["resources"]
    )
    assert "model.sig" in statement["predicate"]["serialization"]["ignore_paths"]
    assert published.signed_by == signer.describe()


@pytest.mark.parametrize("shard_size", [1, 64, 10_000])
def test_a_version_signed_in_shards_validates_verifies_and_names_a_changed_file(
    tmp_path: Path,
    keys,
    shard_size: int,  # type: ignore[no-untyped-def]
) -> None:
    """The shards serialization where the user asks for it (the signer's ``shard_size``): every
    non-empty file cut into consecutive ranges (a file smaller than one shard is one range),
    each digest taken while the copy is read back, the bundle valid under every OMS schema; the
    version verifies, and a byte changed in one shard is named with its file."""
    pair = key_pair(tmp_path / "k", "s")
    sharded = Signer.from_pem(pair.private_pem, shard_size=shard_size)
    trust = Trust.from_pem(pair.public.read_bytes())
    published = publish(make_model(tmp_path, 1), str(tmp_path / "serving"), signer=sharded)
    version = tmp_path / "serving" / str(published.version)
    bundle = json.loads((version / "model.sig").read_bytes())
    schema_validator("bundle.schema.json").validate(bundle)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    schema_validator("statement.schema.json").validate(statement)
    schema_validator("predicate.schema.json").validate(statement["predicate"])
    serialization = statement["predicate"]["serialization"]
    assert (serialization["method"], serialization["shard_size"]) == ("shards", shard_size)
    data = version / "variables" / "variables.data-00000-of-00001"
    size = data.stat().st_size
    ranges = sorted(
        tuple(int(x) for x in r["name"].rsplit(":", 2)[1:])
        for r in statement["predicate"]["resources"]
        if r["name"].startswith("variables/variables.data-")
    )
    assert ranges == [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]
    for r in statement["predicate"]["resources"]:
        rel, start, end = oms.split_shard(r["name"])
        with open(version / rel, "rb") as f:
            f.seek(start)
            assert r["digest"] == hashlib.sha256(f.read(end - start)).hexdigest(), r["name"]
    assert signed.check(resolve(str(version)), trust).ok
    raw = bytearray(data.read_bytes())
    raw[size // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    found = signed.check(resolve(str(version)), trust).findings
    assert [(c, f) for c, f, _ in found] == [("file-changed", "variables/variables.data-00000-of-00001")]


def test_signing_in_place_in_shards_takes_the_same_digests_as_a_signed_publish(tmp_path: Path) -> None:
    pair = key_pair(tmp_path / "k", "s")
    sharded = Signer.from_pem(pair.private_pem, shard_size=100)
    published = publish(make_model(tmp_path, 1), str(tmp_path / "serving"), signer=sharded)
    version = resolve(published.url)
    at_publish = oms.parse_statement(
        oms.parse_bundle((Path(version.path) / "model.sig").read_bytes(), "x"), "x"
    ).resources
    assert signed.digests(version, shard_size=100) == at_publish
    signed.sign(version, sharded)  # re-signed in place: the same statement's resources
    again = oms.parse_statement(oms.parse_bundle((Path(version.path) / "model.sig").read_bytes(), "x"), "x")
    assert again.resources == at_publish and again.serialization.shard_size == 100
    with pytest.raises(SignatureError, match="shard size must be a positive number of bytes"):
        Signer.from_pem(pair.private_pem, shard_size=0)


def test_the_specs_test_vectors_parse_or_are_refused_with_the_reason(tmp_path: Path) -> None:
    vectors = OMS_DIR / "test-vectors" / "v1.0"
    for name, method in (("key", "key"), ("certificate", "certificate"), ("sigstore", "sigstore")):
        where = str(vectors / "valid" / f"{name}.bundle.json")
        parsed = oms.parse_bundle((vectors / "valid" / f"{name}.bundle.json").read_bytes(), where)
        assert parsed.method == method
        statement = oms.parse_statement(parsed, where)
        assert statement.resources and statement.serialization.hash_type == "sha256"
    refused = {
        "invalid/missing-envelope": "'dsseEnvelope' is a required property",
        "invalid/missing-verification-material": "'verificationMaterial' is a required property",
        "invalid/empty": "is not JSON",
        "invalid/missing-tlog-entries": "no transparency log entry",
    }
    for name, reason in refused.items():
        path = vectors / f"{name}.bundle.json"
        with pytest.raises(FormatError, match=reason) as caught:
            oms.parse_bundle(path.read_bytes(), str(path))
        assert str(path) in str(caught.value)
    path = vectors / "invalid-payload" / "wrong-predicate.bundle.json"
    with pytest.raises(FormatError, match="predicate type"):
        oms.parse_statement(oms.parse_bundle(path.read_bytes(), str(path)), str(path))
    # A keyless (Sigstore) bundle needs the public Sigstore services: untrusted here, by name.
    path = vectors / "valid" / "sigstore.bundle.json"
    trust = Trust.from_pem(key_pair(tmp_path, "any").public.read_bytes())
    with pytest.raises(SignatureUntrustedError, match="keyless with Sigstore"):
        trust.verify(oms.parse_bundle(path.read_bytes(), str(path)), str(path))


def _tampered_statement(tmp_path: Path, signer: Signer, change: dict) -> Path:  # type: ignore[type-arg]
    """A model whose bundle signs a statement with ``change`` applied to its first resource."""
    model = resolve(make_model(tmp_path, 7))
    doc = json.loads(signed.statement_for(model, signed.digests(model)))
    doc["predicate"]["resources"][0].update(change)
    model.fs.pipe_file(model.path + "/model.sig", signer.sign(json.dumps(doc).encode()))
    return Path(model.path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "../outside"}, "is not a plain path inside the model"),
        ({"name": "/etc/passwd"}, "is not a plain path inside the model"),
        ({"digest": "abcd"}, "has 64 hex digits, not 4"),
        ({"digest": "zz" * 32}, "does not match"),
        ({"algorithm": "md5"}, "digest algorithm 'md5'"),
    ],
)
def test_a_hostile_statement_is_refused_with_the_reason(tmp_path: Path, keys, change, reason) -> None:  # type: ignore[no-untyped-def]
    signer, trust, _ = keys
    model = _tampered_statement(tmp_path, signer, change)
    result = signed.check(resolve(str(model)), trust)
    assert [c for c, _, _ in result.findings] == ["signature-invalid"]
    assert reason in result.findings[0][2] and result.findings[0][1].endswith("model.sig")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is not JSON"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMa', "is not JSON"),
        (b"[1, 2]", "is not of type 'object'"),
        (b"{" * 100000, "is not JSON"),
        (
            b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"00"}},'
            b'"dsseEnvelope":{"payload":"!!notbase64","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="}]}}',
            "the envelope's payload is not base64",
        ),
    ],
)
def test_a_malformed_bundle_is_a_typed_error_naming_it(
    tmp_path: Path, keys, content: bytes, reason: str
) -> None:  # type: ignore[no-untyped-def]
    _, trust, _ = keys
    model = Path(make_model(tmp_path, 3))
    (model / "model.sig").write_bytes(content)
    result = signed.check(resolve(str(model)), trust)
    ((code, file, message),) = result.findings
    assert code == "signature-invalid" and file == str(model / "model.sig") and reason in message
    with pytest.raises(SignatureInvalidError, match=reason):
        signed.require(resolve(str(model)), trust)


def test_a_one_gigabyte_bundle_is_refused_before_it_is_read(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _, trust, _ = keys
    model = Path(make_model(tmp_path, 4))
    with open(model / "model.sig", "wb") as f:  # sparse: costs no disk
        f.truncate(1 << 30)
    import tracemalloc

    tracemalloc.start()
    result = signed.check(resolve(str(model)), trust)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (
        result.findings[0][0] == "signature-invalid"
        and "1,073,741,824 bytes, more than" in result.findings[0][2]
    )
    assert peak < 64 << 20


def _signed_serving(tmp_path: Path, signer: Signer, versions: int = 3) -> tuple[Path, Path]:
    base, config = tmp_path / "serving" / "ranker", tmp_path / "serving" / "models.config"
    for seed in range(1, versions + 1):
        publish(
            make_model(tmp_path, seed),
            str(base),
            signer=signer,
            serving=ServingTarget(resolve(str(config)), "ranker", labels=("stable",)),
        )
    return base, config


def _tamper(base: Path, how: str, other: Signer) -> str:
    """Change version 2 after it was signed, as a bucket writer would: the crc32c manifest
    rewritten to match, so only the signature can tell; the file its refusal must name."""
    from airflow_savedmodel.storage import manifest as manifests

    file = _change(base, how, other)
    version = resolve(str(base / "2"))
    manifests.write(version.fs, version.path, manifests.scan(version.fs, version.path))
    return file


def _change(base: Path, how: str, other: Signer) -> str:
    v2 = base / "2"
    if how == "variables byte":
        shard = v2 / "variables" / "variables.data-00000-of-00001"
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 1
        shard.write_bytes(bytes(data))
        return "variables/variables.data-00000-of-00001"
    if how == "swapped saved_model.pb":  # another model's graph (a different layer)
        rng = np.random.default_rng(0)
        layer = DenseLayer(rng.standard_normal((4, 5)).astype(np.float32), np.zeros(5, np.float32), "relu")
        other_model = Path(export_dense_model(str(base.parent / "other-graph"), [layer]))
        (v2 / "saved_model.pb").write_bytes((other_model / "saved_model.pb").read_bytes())
        return "saved_model.pb"
    if how == "added file":
        (v2 / "assets").mkdir(exist_ok=True)
        (v2 / "assets" / "vocab.txt").write_text("evil\n")
        return "assets/vocab.txt"
    if how == "removed file":
        (v2 / "fingerprint.pb").unlink()
        return "fingerprint.pb"
    if how == "re-signed by another key":
        signed.sign(resolve(str(v2)), other)
        return "model.sig"
    raise AssertionError(how)


CODES = {
    "variables byte": SignedContentError,
    "swapped saved_model.pb": SignedContentError,
    "added file": SignedContentError,
    "removed file": SignedContentError,
    "re-signed by another key": SignatureUntrustedError,
}


@pytest.mark.parametrize("how", list(CODES))
def test_a_tampered_version_is_refused_everywhere_and_nothing_changes(tmp_path: Path, keys, how: str) -> None:  # type: ignore[no-untyped-def]
    signer, trust, other = keys
    base, config = _signed_serving(tmp_path, signer)
    assert all(signed.check(resolve(str(base / str(n))), trust).ok for n in (1, 2, 3))
    file = _tamper(base, how, other)
    before = config.read_bytes()

    found = signed.check(resolve(str(base / "2")), trust)
    assert any(f == file or f.endswith("/" + file) for _, f, _ in found.findings), found.findings
    expected = {
        "variables byte": "file-changed",
        "swapped saved_model.pb": "file-changed",
        "added file": "file-not-signed",
        "removed file": "file-missing",
        "re-signed by another key": "signature-untrusted",
    }[how]
    assert [c for c, _, _ in found.findings] == [expected]

    cfg, ranker = resolve(str(config)), resolve(str(base))
    attempts = {
        "set-label": lambda: model_config.set_labels(cfg, "ranker", ranker, {"canary": 2}, trust),
        "rollback": lambda: model_config.rollback(cfg, "ranker", ranker, trust=trust),  # stable 3 -> 2
        "promote": lambda: (
            model_config.set_labels(cfg, "ranker", ranker, {"canary": 2}),  # a label set without trust
            model_config.promote(cfg, "ranker", ranker, trust=trust),
        ),
    }
    for gate, attempt in attempts.items():
        snapshot = config.read_bytes()
        with pytest.raises(CODES[how]) as caught:
            attempt()
        assert str(base / "2") in str(caught.value), (gate, caught.value)
        if gate != "promote":
            assert config.read_bytes() == snapshot == before, gate
        else:  # the unchecked canary label moved; stable did not
            assert (
                model_config.describe(model_config.find(model_config.read(cfg), "ranker")).labels["stable"]
                == 3
            )  # type: ignore[arg-type]

    reason = "not among the trusted keys" if how.startswith("re-signed") else "differs from what was signed"
    with pytest.raises(StorageError, match=rf"1 version\(s\) not mirrored: .*/ranker/2: .*{reason}"):
        mirror(ranker, resolve(str(tmp_path / "mirror")), trust=trust)
    assert sorted(v.version for v in list_versions(str(tmp_path / "mirror")) if v.state == "complete") == [
        1,
        3,
    ]
    assert verify(str(base / "2")).ok  # the forged crc32c manifest alone lets the change through


def test_the_mirror_carries_the_signature_and_the_copy_verifies(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    signer, trust, _ = keys
    base, _ = _signed_serving(tmp_path, signer, versions=2)
    result = mirror(resolve(str(base)), resolve(str(tmp_path / "mirror")), trust=trust)
    assert [r.version for r in result.mirrored] == [1, 2]
    for n in (1, 2):
        assert signed.check(resolve(str(tmp_path / "mirror" / str(n))), trust).signer == signer.describe()


def test_publishing_signs_before_the_version_is_visible_and_reuses_only_our_signed_versions(
    tmp_path: Path, keys
) -> None:  # type: ignore[no-untyped-def]
    signer, trust, other = keys
    src = make_model(tmp_path, 5)
    plain = publish(src, str(tmp_path / "serving"))  # published before signing was turned on
    signed_version = publish(src, str(tmp_path / "serving"), signer=signer)
    assert (plain.version, signed_version.version, signed_version.created) == (
        1,
        2,
        True,
    )  # an unsigned one is not reused
    assert publish(src, str(tmp_path / "serving"), signer=signer).version == 2  # ours is
    assert publish(src, str(tmp_path / "serving"), signer=other).version == 3  # another signer's is not
    assert verify(str(tmp_path / "serving" / "2")).ok  # the manifest lists model.sig
    # A signed source must verify before it is published again (never laundered into a new signature).
    tampered = tmp_path / "serving" / "2"
    (tampered / "variables" / "variables.index").write_bytes(
        b"x" + (tampered / "variables" / "variables.index").read_bytes()[1:]
    )
    with pytest.raises(SignedContentError, match=r"variables/variables\.index: content changed"):
        publish(str(tampered), str(tmp_path / "other"), signer=signer, trust=trust)
    assert not (tmp_path / "other").exists()


def test_signing_a_published_version_in_place_keeps_it_complete(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    signer, trust, _ = keys
    publish(make_model(tmp_path, 6), str(tmp_path / "serving"))
    version = resolve(str(tmp_path / "serving" / "1"))
    assert signed.check(version, trust).findings[0][0] == "signature-missing"
    with pytest.raises(SignatureMissingError, match="no signature"):
        signed.require(version, trust)
    signed.sign(version, signer)
    assert signed.check(version, trust).ok
    assert [v.state for v in list_versions(str(tmp_path / "serving"))] == ["complete"]


def test_the_certificate_method_verifies_against_a_trusted_root_only(tmp_path: Path) -> None:
    chain = certificate_chain(tmp_path / "pki")
    signer = Signer.from_pem(chain.leaf_key.read_bytes(), certificate_chain=chain.chain.read_bytes())
    model = resolve(make_model(tmp_path, 8))
    signed.sign(model, signer)
    ok = signed.check(model, Trust.from_pem(chain.root.read_bytes()))
    assert ok.ok and ok.signer == "certificate CN=ml-platform release signer"
    elsewhere = certificate_chain(tmp_path / "other", name="other-team")
    refused = signed.check(model, Trust.from_pem(elsewhere.root.read_bytes()))
    assert (
        refused.findings[0][0] == "signature-untrusted"
        and "does not lead to a trusted root" in refused.findings[0][2]
    )
    expired = certificate_chain(tmp_path / "old", name="old", leaf_days=(-30, -1))
    old = resolve(make_model(tmp_path, 9))
    signed.sign(
        old, Signer.from_pem(expired.leaf_key.read_bytes(), certificate_chain=expired.chain.read_bytes())
    )
    stale = signed.check(old, Trust.from_pem(expired.root.read_bytes()))
    assert stale.findings[0][0] == "signature-untrusted" and "not now" in stale.findings[0][2]


def test_keys_that_cannot_sign_or_be_trusted_are_refused_without_quoting_them(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    encrypted = key_pair(tmp_path, "locked", password=b"s3cret-pass")
    with pytest.raises(SignatureError, match="is encrypted: give its password"):
        Signer.from_pem(encrypted.private_pem)
    for attempt in range(600):  # now and then a wrong password decrypts into bytes that fail later
        with pytest.raises(SignatureError, match="password is wrong"):
            Signer.from_pem(encrypted.private_pem, password=f"nope-{attempt}")
    assert Signer.from_pem(encrypted.private_pem, password="s3cret-pass").method == "key"
    k1 = key_pair(tmp_path, "k1", curve=ec.SECP256K1())
    with pytest.raises(SignatureError, match="secp256k1; OMS signs with P-256, P-384 or P-521"):
        Signer.from_pem(k1.private_pem)
    with pytest.raises(SignatureError, match="not a PEM private key") as caught:
        Signer.from_pem(
            b"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n",
            where="connection 'signing'",
        )
    assert "MIIB" not in str(caught.value) and "connection 'signing'" in str(caught.value)
    ours = key_pair(tmp_path, "ours")
    with pytest.raises(SignatureError, match="never the private one"):
        Trust.from_pem(ours.private_pem)
    with pytest.raises(SignatureError, match="nobody would be trusted"):
        Trust.from_pem(b"just text")


def test_a_blake2b_or_shards_bundle_is_verified_and_blake3_refused_by_name(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    signer, trust, _ = keys
    model = Path(make_model(tmp_path, 10))
    doc = shard_statement(model, 16)
    (model / "model.sig").write_bytes(signer.sign(json.dumps(doc).encode()))
    assert signed.check(resolve(str(model)), trust).ok
    data = bytearray((model / "saved_model.pb").read_bytes())
    data[40] ^= 1
    (model / "saved_model.pb").write_bytes(bytes(data))
    assert [(c, f) for c, f, _ in signed.check(resolve(str(model)), trust).findings] == [
        ("file-changed", "saved_model.pb")
    ]
    doc["predicate"]["serialization"] = {"method": "files", "hash_type": "blake3", "allow_symlinks": False}
    parsed = oms.parse_bundle(signer.sign(json.dumps(doc).encode()), "m/model.sig")
    with pytest.raises(UnsupportedFormatError, match="hashed with 'blake3'"):
        oms.parse_statement(parsed, "m/model.sig")


@pytest.mark.parametrize("dst", ["local", "memory"])
def test_a_big_file_is_hashed_beside_its_copy_and_the_digest_is_right(tmp_path: Path, keys, dst: str) -> None:  # type: ignore[no-untyped-def]
    """Files of 4 MB and more are hashed on their own thread while the kernel copies (local) or
    from the stream (elsewhere); the signature then verifies by an independent read."""
    signer, trust, _ = keys
    rng = np.random.default_rng(3)
    layer = DenseLayer(rng.standard_normal((1200, 1200)).astype(np.float32), np.zeros(1200, np.float32))
    src = export_dense_model(str(tmp_path / "big"), [layer])
    assert (Path(src) / "variables" / "variables.data-00000-of-00001").stat().st_size > 5 << 20
    base = str(tmp_path / "serving") if dst == "local" else f"memory://big-{tmp_path.name}"
    published = publish(src, base, signer=signer)
    assert signed.check(resolve(published.url), trust).ok
