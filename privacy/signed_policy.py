"""Access-policy overrides signed by the federation's coordinator.

The bundled access policy (``tessera/roles.toml``) applies unless an override is named (for
example with ``TESSERA_POLICY``); an override is honoured only if the federation's coordinator
signed it. The signature is a detached file beside the policy, ``<policy file>.sig``, holding
one JSON object::

    {"algorithm": "ed25519", "domain": "access-policy", "federation": NAME,
     "policy_sha256": HEX, "signature": HEX}

``signature`` is the coordinator's Ed25519 signature (:mod:`privacy.signing` framing, domain
``access-policy``) over ``{"federation": NAME, "policy_sha256": HEX}``: the SHA-256 of the
policy file's exact bytes, for one federation. It is checked against the coordinator key in the
signed manifest of the caller's own kit, so neither an edited policy, nor one signed by any other
key, nor one signed for another federation is accepted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, TesseraError
from privacy.at_rest import atomic_write_bytes
from privacy.manifest import Manifest
from privacy.signing import SigningKey, canonical, verify

POLICY_DOMAIN = "access-policy"
SIGNATURE_SUFFIX = ".sig"


def signature_path(policy: Path) -> Path:
    """Where the detached signature of ``policy`` lives."""
    return policy.with_name(policy.name + SIGNATURE_SUFFIX)


def _claims(federation: str, data: bytes) -> dict[str, str]:
    return {"federation": federation, "policy_sha256": hashlib.sha256(data).hexdigest()}


def sign_policy(policy: Path, *, signer: SigningKey, federation: str) -> Path:
    """Sign the policy file as the coordinator of ``federation``; returns the signature file."""
    policy = Path(policy)
    claims = _claims(federation, policy.read_bytes())
    document = {"algorithm": "ed25519", "domain": POLICY_DOMAIN, **claims,
                "signature": signer.sign(POLICY_DOMAIN, claims)}
    target = signature_path(policy)
    atomic_write_bytes(target, canonical(document) + b"\n")
    return target


def verified_policy_text(policy: Path, manifest: Manifest, *, source: str) -> str:
    """The policy file's text, once its signature checks against ``manifest``'s coordinator.

    ``source`` names where the override came from (``TESSERA_POLICY``) for messages. Raises
    CONFIG_INVALID if the file cannot be read, BAD_SIGNATURE for every signature problem.
    """
    policy = Path(policy)
    try:
        data = policy.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{source}: access policy {policy} cannot be read "
                           f"({type(exc).__name__})") from None
    document = _signature_document(policy, source)
    if document.get("federation") != manifest.name:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"{source}: access policy {policy.name} is signed for another "
                           f"federation, not {manifest.name!r}")
    claims = _claims(manifest.name, data)
    if document.get("policy_sha256") != claims["policy_sha256"]:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"{source}: access policy {policy.name} was changed after it was "
                           "signed")
    try:
        verify(manifest.coordinator_signing_key, str(document.get("signature", "")),
               POLICY_DOMAIN, claims)
    except TesseraError:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"{source}: access policy {policy.name} is not signed by the "
                           f"coordinator of federation {manifest.name!r}") from None
    return text


def _signature_document(policy: Path, source: str) -> dict[str, Any]:
    path = signature_path(policy)
    if not path.is_file():
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"{source}: access policy {policy.name} is not signed; an override "
                           f"is honoured only with the federation coordinator's signature "
                           f"({path.name} beside it)")
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        document = None
    if not isinstance(document, dict) or document.get("domain") != POLICY_DOMAIN \
            or document.get("algorithm") != "ed25519":
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           f"{source}: {path.name} is not an access-policy signature")
    return document
