"""The custodian's evaluation-context package: what the coordinator receives for a study.

A signed JSON document carrying the add-only CKKS context (no secret, public, relin or
Galois keys), its key fingerprint and the study's plan hash. The coordinator accepts it only
if the custodian named in it is a site of the signed manifest, its signature verifies and
the context cannot decrypt.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from common.errors import ErrorCode, TesseraError
from privacy.ckks import can_decrypt, can_encrypt
from privacy.manifest import Manifest
from privacy.signing import SigningKey, verify

PACKAGE_DOMAIN = "ckks-evaluation-context"
_FIELDS = ("plan_hash", "fingerprint", "custodian", "context_b64")


@dataclass(frozen=True)
class EvaluationPackage:
    """A verified package."""

    plan_hash: str
    fingerprint: str
    custodian: str
    context: bytes = field(repr=False)


def build_package(*, plan_hash: str, fingerprint: str, custodian: str,
                  evaluation_context: bytes, signer: SigningKey) -> bytes:
    """The signed package bytes (refuses a context able to decrypt or encrypt)."""
    if can_decrypt(evaluation_context) or can_encrypt(evaluation_context):
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "an evaluation context must hold no secret or public key")
    claims = {"plan_hash": plan_hash, "fingerprint": fingerprint, "custodian": custodian,
              "context_b64": base64.b64encode(evaluation_context).decode()}
    doc = {**claims, "signature": signer.sign(PACKAGE_DOMAIN, claims)}
    return json.dumps(doc, indent=1).encode()


def verify_package(data: bytes, manifest: Manifest) -> EvaluationPackage:
    """Check a package against the manifest; raise naming the fault."""
    try:
        doc = json.loads(data.decode("utf-8"))
        claims = {k: str(doc[k]) for k in _FIELDS}
        signature = str(doc["signature"])
    except (ValueError, KeyError, TypeError):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "evaluation-context package is malformed") from None
    verify(manifest.site(claims["custodian"]).signing_public_key, signature, PACKAGE_DOMAIN,
           claims)
    context = base64.b64decode(claims["context_b64"])
    if can_decrypt(context) or can_encrypt(context):
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "evaluation-context package holds a secret or public key: refused")
    return EvaluationPackage(claims["plan_hash"], claims["fingerprint"], claims["custodian"],
                             context)
