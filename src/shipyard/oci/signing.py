"""Signing keys: ECDSA P-256 over SHA-256, the key type cosign makes and verifies with ``--key``.

The private key lives in an encrypted PKCS#8 PEM (``cryptography``'s best available encryption), the
public key in a PKIX PEM, which ``cosign verify --key`` reads as it is. Signatures are DER-encoded, as
cosign writes them. A key id is the SHA-256 of the public key's DER encoding: what a ledger entry or an
error names, never the key itself. Nothing here prints, logs or puts a key in an exception.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class BadKey(ValueError):
    """A key that cannot be read (wrong password, not a P-256 key, not PEM); ``str()`` says which, not the key."""


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise BadKey("not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise BadKey("not an ECDSA P-256 public key")
        return cls(key)

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def key_id(self) -> str:
        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """A private key; its repr names only the key id."""

    __slots__ = ("_key",)

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=password or None)
        except TypeError:  # encrypted without a password, or a password for a plain key
            raise BadKey(
                "the key is encrypted: give its password" if not password else "the key is not encrypted"
            ) from None
        except ValueError:
            raise BadKey("wrong password, or not a PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise BadKey("not an ECDSA P-256 private key")
        return cls(key)

    def pem(self, password: bytes) -> bytes:
        """The encrypted PKCS#8 PEM (a password is required: a key is never written in the clear)."""
        if not password:
            raise BadKey("a password is required to write a private key")
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )

    @property
    def public(self) -> PublicKey:
        return PublicKey(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return f"SigningKey({self.public.key_id})"

    __str__ = __repr__
