"""Sealing a secret to one site: X25519 + HKDF-SHA256 + AES-256-GCM, signed by the sender.

Used to hand a site its share of key material (e.g. the serialized CKKS secret context) so that
only that site can open it and it can tell who made it. Sealed blob (format version 1)::

    offset  size  field
    0       4     magic b"TSSL"
    4       1     format version, 0x01
    5       4     H, header length, unsigned big-endian (at most 64 KiB)
    9       H     header: canonical JSON (sorted keys, no whitespace, UTF-8)
    9+H     64    Ed25519 signature by the sender
    73+H    ...   AES-256-GCM ciphertext followed by its 16-byte tag

Header fields: ``format`` ("tessera-sealed"), ``version`` (1), ``cipher``, ``purpose``,
``sender``, ``sender_public`` (Ed25519, hex), ``recipient``, ``recipient_public`` (X25519,
hex), ``ephemeral_public`` (X25519, hex), ``nonce`` (12 bytes, hex) and ``context`` (str->str,
e.g. plan hash and CKKS key fingerprint). The AES key is HKDF-SHA256 over the X25519 shared
secret of a fresh ephemeral key and the recipient key, with ``info`` binding purpose, sender,
recipient and both public keys; the exact header bytes are the GCM associated data.

The signature (:mod:`privacy.signing`, domain ``tessera/sealed-secret``) covers
``{"header_sha256", "ciphertext_sha256"}``, i.e. the exact header bytes and the ciphertext.
:func:`open_sealed` checks it before reading anything else, then recipient and purpose, then
decrypts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.errors import ErrorCode, TesseraError
from privacy.signing import SigningKey, canonical, verify

MAGIC = b"TSSL"
FORMAT_VERSION = 1
SIGNATURE_DOMAIN = "tessera/sealed-secret"
CIPHER = "x25519-hkdf-sha256-aes-256-gcm"
MAX_HEADER_BYTES = 64 * 1024
MAX_CONTEXT_ENTRIES = 64

_PREFIX = 9
_SIGNATURE_BYTES = 64
_TAG_BYTES = 16
_HKDF_INFO = b"tessera/seal/v1\x00"
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class SealingKey:
    """A site's X25519 private key (raw 32 bytes; never shown in repr)."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "raw: X25519 private key must be 32 bytes")

    @classmethod
    def generate(cls) -> SealingKey:
        """A fresh random key."""
        return cls(X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))

    @property
    def public_hex(self) -> str:
        """The matching public key, hex encoded."""
        return X25519PrivateKey.from_private_bytes(self.raw).public_key().public_bytes(*_RAW).hex()


def _require_text(value: object, param: str, *, limit: int = 128) -> str:
    if (not isinstance(value, str) or not value or len(value) > limit
            or not value.isprintable()):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{param}: must be 1-{limit} printable characters")
    return value


def _require_context(context: object) -> dict[str, str]:
    if not isinstance(context, dict) or len(context) > MAX_CONTEXT_ENTRIES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"context: must be a dict of at most {MAX_CONTEXT_ENTRIES} entries")
    for key, value in context.items():
        _require_text(key, "context key", limit=64)
        _require_text(value, f"context[{key!r}]", limit=1024)
    return dict(context)


def _x25519_public(public_hex: object, param: str) -> X25519PublicKey:
    try:
        if not isinstance(public_hex, str):
            raise TypeError(param)
        return X25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    except (TypeError, ValueError):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{param}: not an X25519 public key (64 hex characters)") from None


def _aead(shared: bytes, *, purpose: str, sender: str, recipient: str, ephemeral_public: str,
          recipient_public: str) -> AESGCM:
    info = _HKDF_INFO + canonical({
        "purpose": purpose, "sender": sender, "recipient": recipient,
        "ephemeral_public": ephemeral_public, "recipient_public": recipient_public})
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    return AESGCM(key)


def _signed_payload(header: bytes, ciphertext: bytes) -> dict[str, str]:
    return {"header_sha256": hashlib.sha256(header).hexdigest(),
            "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest()}


def seal(plaintext: bytes, *, recipient_public_hex: str, recipient: str, sender: str,
         sender_key: SigningKey, purpose: str, context: dict[str, str]) -> bytes:
    """Encrypt ``plaintext`` so only ``recipient``'s key opens it, signed by ``sender_key``."""
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "plaintext: must be bytes")
    if not isinstance(sender_key, SigningKey):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "sender_key: must be a SigningKey")
    recipient_public = _x25519_public(recipient_public_hex, "recipient_public_hex")
    names = {"purpose": _require_text(purpose, "purpose"),
             "sender": _require_text(sender, "sender"),
             "recipient": _require_text(recipient, "recipient")}
    ephemeral = X25519PrivateKey.generate()
    publics = {"ephemeral_public": ephemeral.public_key().public_bytes(*_RAW).hex(),
               "recipient_public": recipient_public.public_bytes(*_RAW).hex()}
    nonce = os.urandom(12)
    header = canonical({
        "format": "tessera-sealed", "version": FORMAT_VERSION, "cipher": CIPHER,
        "sender_public": sender_key.public_hex, "nonce": nonce.hex(),
        "context": _require_context(context), **names, **publics})
    if len(header) > MAX_HEADER_BYTES:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "context: header exceeds 64 KiB")
    try:
        shared = ephemeral.exchange(recipient_public)
    except ValueError:  # a low-order point: no shared secret
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "recipient_public_hex: not a usable X25519 public key") from None
    aead = _aead(shared, **names, **publics)
    ciphertext = aead.encrypt(nonce, bytes(plaintext), header)
    signed = _signed_payload(header, ciphertext)
    signature = bytes.fromhex(sender_key.sign(SIGNATURE_DOMAIN, signed))
    return (MAGIC + bytes([FORMAT_VERSION]) + len(header).to_bytes(4, "big") + header + signature
            + ciphertext)


def _split(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """(header bytes, signature, ciphertext) of a well-framed blob; DATA_INVALID otherwise."""
    blob = bytes(blob)
    if len(blob) < _PREFIX or blob[:4] != MAGIC:
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed blob: not a Tessera sealed secret")
    if blob[4] != FORMAT_VERSION:
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed blob: unsupported format version")
    size = int.from_bytes(blob[5:_PREFIX], "big")
    end = _PREFIX + size
    if size > MAX_HEADER_BYTES or len(blob) < end + _SIGNATURE_BYTES + _TAG_BYTES:
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed blob: truncated or malformed")
    return blob[_PREFIX:end], blob[end:end + _SIGNATURE_BYTES], blob[end + _SIGNATURE_BYTES:]


def _parse_header(header: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(header)
    except (ValueError, RecursionError):
        doc = None
    fields = ("purpose", "sender", "sender_public", "recipient", "recipient_public",
              "ephemeral_public", "nonce")
    if (not isinstance(doc, dict) or doc.get("format") != "tessera-sealed"
            or doc.get("version") != FORMAT_VERSION or doc.get("cipher") != CIPHER
            or not all(isinstance(doc.get(name), str) for name in fields)
            or not isinstance(doc.get("context"), dict)
            or not all(isinstance(v, str) for v in doc["context"].values())):
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed blob: header is malformed")
    return doc


def inspect_sealed(blob: bytes) -> dict[str, Any]:
    """The header of a sealed blob, for tooling. Not verified and not decrypted."""
    header, _, _ = _split(blob)
    return _parse_header(header)


def open_sealed(blob: bytes, *, recipient_key: SealingKey, recipient: str,
                sender_public_hex: str, purpose: str) -> tuple[bytes, dict[str, str]]:
    """Verify the sender's signature, check recipient and purpose, decrypt.

    Returns the plaintext and the header's context.
    """
    if not isinstance(recipient_key, SealingKey):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "recipient_key: must be a SealingKey")
    if not isinstance(sender_public_hex, str):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "sender_public_hex: must be a hex string")
    header_bytes, signature, ciphertext = _split(blob)
    try:
        verify(sender_public_hex, signature.hex(), SIGNATURE_DOMAIN,
               _signed_payload(header_bytes, ciphertext))
    except TesseraError:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           "sealed secret: the custodian's (sender's) signature did not verify"
                           ) from None
    header = _parse_header(header_bytes)
    if header["sender_public"].lower() != sender_public_hex.lower():
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed secret: header names another sender key")
    if header["recipient"] != recipient or header["recipient_public"] != recipient_key.public_hex:
        raise TesseraError(ErrorCode.PERMISSION_DENIED, "sealed for another site")
    if header["purpose"] != purpose:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"sealed for purpose {header['purpose']!r}, not {purpose!r}")
    ephemeral = _x25519_public(header["ephemeral_public"], "ephemeral_public")
    try:
        shared = X25519PrivateKey.from_private_bytes(recipient_key.raw).exchange(ephemeral)
        aead = _aead(shared, purpose=purpose, sender=header["sender"], recipient=recipient,
                     ephemeral_public=header["ephemeral_public"],
                     recipient_public=header["recipient_public"])
        plaintext = aead.decrypt(bytes.fromhex(header["nonce"]), ciphertext, header_bytes)
    except (InvalidTag, ValueError):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "sealed secret: integrity check failed (sealed for another site?)"
                           ) from None
    return plaintext, dict(header["context"])
