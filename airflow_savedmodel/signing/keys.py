"""Who signs and whom we trust: a :class:`Signer` holds an EC private key (and, for the
certificate method, its certificate chain); a :class:`Trust` holds the public keys and the root
certificates a deployment accepts, and checks a bundle's signature against them.

Keys are PEM. A key's identity is the OMS ``hint``: the hex SHA-256 of its public key's PEM
(SubjectPublicKeyInfo), which is what the bundle names and what messages print: never the key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel.errors import SignatureError, SignatureInvalidError, SignatureUntrustedError
from airflow_savedmodel.signing import oms

CURVES = ("secp256r1", "secp384r1", "secp521r1")  # P-256, P-384, P-521: what OMS requires


def _hash_for(key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]


def _check_curve(key: Any, where: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError(
            f"a {type(key).__name__.removeprefix('_')}, not an elliptic-curve key (P-256/384/521)", where
        )
    if key.curve.name not in CURVES:
        raise SignatureError(
            f"an elliptic-curve key on {key.curve.name}; OMS signs with P-256, P-384 or P-521", where
        )


def key_hint(public_key: Any) -> str:
    """The OMS hint of a public key: hex SHA-256 of its PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _pem_blocks(text: bytes, where: str) -> list[tuple[str, bytes]]:
    """``(label, whole PEM block)`` of every block in ``text``."""
    out = []
    for part in text.split(b"-----BEGIN ")[1:]:
        label, _, rest = part.partition(b"-----")
        end = b"-----END " + label + b"-----"
        if end not in rest:
            raise SignatureError(f"PEM block {label.decode(errors='replace')!r} has no END line", where)
        out.append(
            (
                label.decode(errors="replace"),
                b"-----BEGIN " + label + b"-----" + rest.split(end)[0] + end + b"\n",
            )
        )
    return out


@dataclass(frozen=True)
class Signer:
    """An EC private key, with the certificate chain that vouches for it (certificate method)
    or without (key method). Build it with :meth:`from_pem`."""

    private_key: Any = field(repr=False)
    certificates: tuple[Any, ...] = ()  # cryptography x509 objects, the signing certificate first
    # OMS serialization: None signs each file whole ("files", what every verifier reads); a
    # number of bytes signs each file in ranges of that size ("shards"), hashed in parallel.
    shard_size: int | None = None

    @classmethod
    def from_pem(
        cls,
        private_key: bytes | str,
        *,
        password: bytes | str | None = None,
        certificate_chain: bytes | str | None = None,
        where: str = "signing key",
        shard_size: int | None = None,
    ) -> Signer:
        """Load a PEM private key (``password`` if encrypted) and, for the certificate method, a
        PEM chain: the signing certificate first, then the intermediates. ``shard_size``: sign
        files in ranges of that many bytes (OMS "shards"; default: each file whole). Errors
        never quote the key."""
        if shard_size is not None and (isinstance(shard_size, bool) or int(shard_size) < 1):
            raise SignatureError(f"shard size must be a positive number of bytes, not {shard_size!r}", where)
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        data = private_key.encode() if isinstance(private_key, str) else private_key
        secret = password.encode() if isinstance(password, str) else password
        try:
            key = serialization.load_pem_private_key(data, secret or None)
        except TypeError:
            raise SignatureError(
                f"the private key {'is not encrypted' if secret else 'is encrypted: give its password'}",
                where,
            ) from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            # A wrong password usually fails the decryption itself, but now and then it decrypts
            # into bytes that fail to parse as a key (seen once in a full run): an encrypted PEM
            # that does not open with the given password is a wrong password either way.
            encrypted = b"ENCRYPTED" in data[:200]
            if (secret and encrypted) or "password" in str(exc).lower() or "decrypt" in str(exc).lower():
                raise SignatureError("the private key's password is wrong", where) from None
            raise SignatureError("not a PEM private key", where) from None
        _check_curve(key.public_key(), where)
        chain: tuple[Any, ...] = ()
        if certificate_chain:
            pem = certificate_chain.encode() if isinstance(certificate_chain, str) else certificate_chain
            try:
                chain = tuple(x509.load_pem_x509_certificates(pem))
            except ValueError:
                raise SignatureError("the certificate chain is not PEM certificates", where) from None
            if chain[0].public_key() != key.public_key():
                raise SignatureError("the first certificate of the chain is not the private key's", where)
        return cls(key, chain, None if shard_size is None else int(shard_size))

    @property
    def method(self) -> str:
        return "certificate" if self.certificates else "key"

    @property
    def hint(self) -> str:
        return key_hint(self.private_key.public_key())

    def describe(self) -> str:
        """Who signs, as logs and records name it (never the key itself)."""
        if self.certificates:
            return f"certificate {self.certificates[0].subject.rfc4514_string()}"
        return f"key sha256:{self.hint[:16]}"

    def material(self) -> dict[str, Any]:
        """The bundle's verification material for this signer."""
        from cryptography.hazmat.primitives import serialization

        if self.certificates:
            der = [c.public_bytes(serialization.Encoding.DER) for c in self.certificates]
            return {
                "x509CertificateChain": {
                    "certificates": [{"rawBytes": base64.b64encode(d).decode()} for d in der]
                }
            }
        return {"publicKey": {"hint": self.hint}}

    def signed(self, parsed: oms.Bundle) -> bool:
        """Whether this signer made ``parsed`` (same key or signing certificate, valid signature)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if self.certificates:
            ours = self.certificates[0].public_bytes(serialization.Encoding.DER)
            if parsed.method != "certificate" or parsed.certificates[:1] != (ours,):
                return False
        elif parsed.method != "key" or parsed.key_hint != self.hint:
            return False
        public = self.private_key.public_key()
        try:
            public.verify(
                parsed.signature, oms.pae(parsed.payload_type, parsed.payload), ec.ECDSA(_hash_for(public))
            )
        except InvalidSignature:
            return False
        return True

    def sign(self, payload: bytes) -> bytes:
        """An OMS bundle signing the statement ``payload`` (see oms.statement)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        signature = self.private_key.sign(
            oms.pae(oms.PAYLOAD_TYPE, payload), ec.ECDSA(_hash_for(self.private_key.public_key()))
        )
        return oms.bundle(payload, signature, self.material())


@dataclass(frozen=True)
class Trust:
    """The signers a deployment accepts: public keys (key method, matched by hint) and root
    certificates (certificate method, the bundle's chain must lead to one). Build it with
    :meth:`from_pem` from one PEM text holding any mix of PUBLIC KEY and CERTIFICATE blocks."""

    keys: dict[str, Any] = field(default_factory=dict)  # hint -> public key
    roots: tuple[Any, ...] = ()
    source: str = ""

    @classmethod
    def from_pem(cls, text: bytes | str, where: str = "trusted signers") -> Trust:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        data = text.encode() if isinstance(text, str) else text
        keys: dict[str, Any] = {}
        roots = []
        for label, block in _pem_blocks(data, where):
            try:
                if label == "PUBLIC KEY":
                    key = serialization.load_pem_public_key(block)
                    _check_curve(key, where)
                    keys[key_hint(key)] = key
                elif label == "CERTIFICATE":
                    roots.append(x509.load_pem_x509_certificate(block))
                else:
                    raise SignatureError(
                        f"a {label} block; trusted signers are PUBLIC KEY and CERTIFICATE blocks"
                        + (" (give the public key, never the private one)" if "PRIVATE" in label else ""),
                        where,
                    )
            except ValueError:
                raise SignatureError(f"a {label} block that does not parse", where) from None
        if not keys and not roots:
            raise SignatureError("no PUBLIC KEY or CERTIFICATE block: nobody would be trusted", where)
        return cls(keys, tuple(roots), where)

    def describe(self) -> str:
        parts = [f"{len(self.keys)} key(s)"] if self.keys else []
        parts += [f"{len(self.roots)} root certificate(s)"] if self.roots else []
        return " and ".join(parts) + (f" from {self.source}" if self.source else "")

    def verify(self, parsed: oms.Bundle, where: str, now: datetime.datetime | None = None) -> str:
        """Check the bundle's signature; return who signed (as :meth:`Signer.describe` says it).

        Raises SignatureUntrustedError when the signer is not trusted here, SignatureInvalidError
        when the signature does not match what it claims to sign.
        """
        if parsed.method == "sigstore":
            raise SignatureUntrustedError(
                "signed keyless with Sigstore; verifying that needs the public Sigstore services "
                "(Fulcio, Rekor), which this deployment does not use: sign with a key or a certificate",
                where,
            )
        if parsed.method == "certificate":
            key, who = self._certificate_key(parsed.certificates, where, now)
        else:
            key, who = self._trusted_key(parsed, where)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            key.verify(
                parsed.signature, oms.pae(parsed.payload_type, parsed.payload), ec.ECDSA(_hash_for(key))
            )
        except InvalidSignature:
            raise SignatureInvalidError(
                f"the signature does not match the signed statement ({who})", where
            ) from None
        return who

    def _trusted_key(self, parsed: oms.Bundle, where: str) -> tuple[Any, str]:
        hint = parsed.key_hint
        if parsed.raw_public_key is not None and hint is None:
            from cryptography.hazmat.primitives import serialization

            try:
                raw = parsed.raw_public_key
                key = (
                    serialization.load_pem_public_key(raw)
                    if raw.startswith(b"-----")
                    else serialization.load_der_public_key(raw)
                )
            except ValueError:
                raise SignatureInvalidError("the bundle's public key does not parse", where) from None
            _check_curve(key, where)
            hint = key_hint(key)
        assert hint is not None
        who = f"key sha256:{hint[:16]}"
        if hint not in self.keys:
            raise SignatureUntrustedError(
                f"signed by {who}, which is not among the trusted keys ({self.describe()})", where
            )
        return self.keys[hint], who

    def _certificate_key(
        self, chain_der: Iterable[bytes], where: str, now: datetime.datetime | None
    ) -> tuple[Any, str]:
        """The signing certificate's key, once its chain leads to a trusted root: each
        certificate issued (and signed) by the next, every one valid ``now``, intermediates
        marked as CAs, the signing certificate allowed to sign (digital signature or code signing)."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        try:
            chain = [x509.load_der_x509_certificate(d) for d in chain_der]
        except ValueError:
            raise SignatureInvalidError("a certificate of the bundle's chain does not parse", where) from None
        leaf = chain[0]
        who = f"certificate {leaf.subject.rfc4514_string()}"
        if not self.roots:
            raise SignatureUntrustedError(
                f"signed by {who}; no root certificate is trusted ({self.describe()})", where
            )
        moment = now or datetime.datetime.now(datetime.UTC)
        pool = chain[1:] + list(self.roots)
        current = leaf
        for _ in range(oms.MAX_CERTIFICATES + 1):
            if not current.not_valid_before_utc <= moment <= current.not_valid_after_utc:
                raise SignatureUntrustedError(
                    f"{who}: certificate {current.subject.rfc4514_string()} is valid from "
                    f"{current.not_valid_before_utc:%Y-%m-%d} to {current.not_valid_after_utc:%Y-%m-%d}, not now",
                    where,
                )
            if current is not leaf and not _is_ca(current):
                raise SignatureUntrustedError(
                    f"{who}: {current.subject.rfc4514_string()} in its chain is not a CA", where
                )
            if any(current == root for root in self.roots):
                break
            issuer = next((c for c in pool if c.subject == current.issuer and _issued(current, c)), None)
            if issuer is None:
                raise SignatureUntrustedError(
                    f"signed by {who}, whose chain does not lead to a trusted root ({self.describe()})", where
                )
            current = issuer
        else:
            raise SignatureUntrustedError(f"{who}: certificate chain too long", where)
        usable = False
        with contextlib.suppress(x509.ExtensionNotFound):
            usable = leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        with contextlib.suppress(x509.ExtensionNotFound):
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            usable = usable or ExtendedKeyUsageOID.CODE_SIGNING in eku
        if not usable:
            raise SignatureUntrustedError(
                f"{who} is not allowed to sign (no digital signature or code signing usage)", where
            )
        key = leaf.public_key()
        _check_curve(key, where)
        return key, who


def _issued(cert: Any, issuer: Any) -> bool:
    """Whether ``issuer`` signed ``cert`` (names and signature)."""
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
