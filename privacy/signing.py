"""Ed25519 signatures of Tessera parties, over canonical, domain-separated messages.

Every signed object (update envelope, federation manifest, sealed key, checkpoint) is signed
over ``domain || canonical JSON`` so a signature made for one purpose can never be replayed
as another. Keys travel as raw 32-byte values, hex encoded in manifests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from common.errors import ErrorCode, TesseraError


@dataclass(frozen=True)
class SigningKey:
    """A party's Ed25519 private key (raw 32 bytes; never shown in repr)."""

    raw: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        key = Ed25519PrivateKey.generate()
        return cls(key.private_bytes(serialization.Encoding.Raw,
                                     serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption()))

    @property
    def public_hex(self) -> str:
        """The matching public key, hex encoded."""
        pub = Ed25519PrivateKey.from_private_bytes(self.raw).public_key()
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    def sign(self, domain: str, payload: Any) -> str:
        """Hex signature over ``domain`` and the canonical form of ``payload``."""
        key = Ed25519PrivateKey.from_private_bytes(self.raw)
        return key.sign(signed_message(domain, payload)).hex()


def fingerprint(public_hex: str) -> str:
    """A short, comparable name for a public key (Ed25519 or X25519, hex): the first 16 bytes
    of SHA-256 over the raw key, as 8 groups of 4 hex digits (``1a2b:3c4d:...``).

    Operators compare fingerprints read out over another channel (phone, letter) before
    trusting a key; CONFIG_INVALID if ``public_hex`` is not 32 bytes of hex.
    """
    try:
        raw = bytes.fromhex(public_hex)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "public key: must be 64 hex characters")
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(digest[i:i + 4] for i in range(0, 32, 4))


def canonical(payload: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_message(domain: str, payload: Any) -> bytes:
    """The exact bytes a signature covers."""
    return b"tessera-signature/v1\x00" + domain.encode() + b"\x00" + canonical(payload)


def verify(public_hex: str, signature_hex: str, domain: str, payload: Any) -> None:
    """Raise BAD_SIGNATURE unless ``signature_hex`` is the key's signature of the payload."""
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        pub.verify(bytes.fromhex(signature_hex), signed_message(domain, payload))
    except (InvalidSignature, ValueError):
        message = f"{domain}: signature does not verify"
        raise TesseraError(ErrorCode.BAD_SIGNATURE, message) from None
