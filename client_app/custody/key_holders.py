"""Who holds a study's CKKS key: the custodian-signed list of key holders, and where it is kept.

The key custodian signs, for one study (plan hash) and one key (fingerprint), the sites it
confirmed as holders of the study key, itself included, each with its Ed25519 signing key.
Every sealed copy carries that statement next to the secret context, and each holder keeps it
in its vault, so that a site can later accept encrypted contributions from key holders only.

Statement (canonical JSON, :mod:`privacy.signing` framing, domain ``study-key-holders``)::

    {"statement": {"custodian": NAME, "fingerprint": HEX, "holders": {NAME: SIGNING_KEY_HEX},
                   "plan_hash": HEX64},
     "signature": HEX}

Sealed plaintext (purpose ``ckks-study-key``): ``b"TSKH"``, the statement's length (4 bytes,
big-endian), the statement, then the serialized CKKS secret context.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from client_app.custody.vault import SiteVault
from common.errors import ErrorCode, TesseraError
from privacy.signing import SigningKey, canonical, verify

HOLDERS_DOMAIN = "study-key-holders"
_MAGIC = b"TSKH"
_LENGTH = 4
_MAX_STATEMENT = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sign_holders(*, plan_hash: str, fingerprint: str, custodian: str,
                 holders: Mapping[str, str], signer: SigningKey) -> bytes:
    """The custodian's signed statement of the study key's holders (canonical JSON bytes)."""
    statement = {"plan_hash": plan_hash, "fingerprint": fingerprint, "custodian": custodian,
                 "holders": {name: key.lower() for name, key in sorted(holders.items())}}
    return canonical({"statement": statement,
                      "signature": signer.sign(HOLDERS_DOMAIN, statement)})


def _parse(document: bytes) -> tuple[dict[str, Any], str]:
    try:
        doc = json.loads(document)
    except (ValueError, RecursionError):
        doc = None
    statement = doc.get("statement") if isinstance(doc, dict) else None
    signature = doc.get("signature") if isinstance(doc, dict) else None
    holders = statement.get("holders") if isinstance(statement, dict) else None
    if (not isinstance(statement, dict) or not isinstance(signature, str)
            or set(statement) != {"plan_hash", "fingerprint", "custodian", "holders"}
            or not isinstance(holders, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in holders.items())
            or not all(isinstance(statement[k], str)
                       for k in ("plan_hash", "fingerprint", "custodian"))):
        raise TesseraError(ErrorCode.DATA_INVALID, "study key holders: statement is malformed")
    return statement, signature


def verify_holders(document: bytes, *, custodian: str, custodian_public: str, plan_hash: str,
                   fingerprint: str) -> dict[str, str]:
    """The holders (site name -> signing key hex) of a statement ``custodian`` signed for this
    study and key; BAD_SIGNATURE for any other signer, study, key or custodian."""
    statement, signature = _parse(document)
    try:
        verify(custodian_public, signature, HOLDERS_DOMAIN, statement)
    except TesseraError:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"study key holders: not signed by the custodian {custodian!r}"
                           ) from None
    if (statement["plan_hash"], statement["fingerprint"], statement["custodian"]) != (
            plan_hash, fingerprint, custodian):
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           "study key holders: signed for another study, key or custodian")
    holders: dict[str, str] = dict(statement["holders"])
    if holders.get(custodian) != custodian_public.lower():
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           "study key holders: the custodian is not listed with its own key")
    return holders


def pack(document: bytes, secret_context: bytes) -> bytes:
    """The plaintext of a sealed copy: the holders statement, then the secret context."""
    return _MAGIC + len(document).to_bytes(_LENGTH, "big") + document + secret_context


def unpack(plaintext: bytes) -> tuple[bytes, bytes]:
    """(holders statement, secret context) of a sealed copy's plaintext; DATA_INVALID else."""
    head = len(_MAGIC) + _LENGTH
    size = int.from_bytes(plaintext[len(_MAGIC):head], "big") if len(plaintext) >= head else -1
    if plaintext[:len(_MAGIC)] != _MAGIC or not 0 < size <= _MAX_STATEMENT \
            or len(plaintext) <= head + size:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "sealed CKKS key: no study key holders statement in it")
    return plaintext[head:head + size], plaintext[head + size:]


def _secret_name(plan_hash: str) -> str:
    if not _HEX64.fullmatch(plan_hash):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "plan_hash: must be 64 hex characters")
    return f"ckks-holders-{plan_hash[:16]}"


def store_holders(vault: SiteVault, plan_hash: str, document: bytes) -> None:
    """Keep a verified holders statement in the vault (encrypted and authenticated at rest)."""
    vault.write_secret(_secret_name(plan_hash), document)


def study_key_holders(vault: SiteVault, plan_hash: str) -> dict[str, str]:
    """The study key's holders this site keeps: site name -> signing public key (hex).

    KEY_MISSING if this site holds no key (so no holders statement) for the study. The stored
    statement is checked again: its signature under the custodian's key it lists, and its
    plan hash.
    """
    document = vault.read_secret(_secret_name(plan_hash))
    if document is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{vault.site.name}' holds no CKKS key (and so no key "
                           f"holders) for study {plan_hash[:12]}")
    return dict(_verified_stored(document, plan_hash))


@functools.lru_cache(maxsize=16)
def _verified_stored(document: bytes, plan_hash: str) -> tuple[tuple[str, str], ...]:
    """The holders of a stored statement, checked: a pure function of the statement's bytes
    and the plan hash, so a statement read again (each task that opens a sum; every site of a
    simulation holds the same one) is parsed and verified once. A statement that fails is
    not kept: it is checked (and refused) again each time."""
    statement, _ = _parse(document)
    custodian = statement["custodian"]
    return tuple(verify_holders(document, custodian=custodian,
                                custodian_public=str(statement["holders"].get(custodian, "")),
                                plan_hash=plan_hash,
                                fingerprint=statement["fingerprint"]).items())
