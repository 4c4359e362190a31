"""The coordinator's view of a study's CKKS key: the add-only context and its fingerprint.

The coordinator folder holds only what :func:`write_evaluation_context` writes: a context
with no secret, public, relinearisation or Galois keys, which can add ciphertexts but can
neither encrypt nor decrypt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import ErrorCode, TesseraError
from privacy.ckks import can_decrypt
from privacy.he_package import verify_package
from privacy.manifest import Manifest


@dataclass(frozen=True)
class EvaluationContext:
    """The add-only CKKS context of one study, as held by the coordinator."""

    plan_hash: str
    fingerprint: str
    context: bytes


def _stem(plan_hash: str) -> str:
    return plan_hash[:16]


def write_evaluation_context(
    directory: Path, *, plan_hash: str, fingerprint: str, context: bytes
) -> Path:
    """Store a study's evaluation context; refuses a context that could decrypt."""
    if can_decrypt(context):
        raise TesseraError(
            ErrorCode.PERMISSION_DENIED,
            "refusing to store a CKKS context that holds a secret key on the coordinator",
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{_stem(plan_hash)}.evalctx"
    path.write_bytes(context)
    meta = {"plan_hash": plan_hash, "fingerprint": fingerprint, "context_file": path.name}
    (directory / f"{_stem(plan_hash)}.json").write_text(json.dumps(meta, indent=2))
    return path


def read_evaluation_context(directory: Path, *, plan_hash: str) -> EvaluationContext:
    """Load a study's evaluation context, or KEY_MISSING if the coordinator has none."""
    meta_path = directory / f"{_stem(plan_hash)}.json"
    if not meta_path.exists():
        raise TesseraError(
            ErrorCode.KEY_MISSING,
            f"the coordinator has no CKKS evaluation context for study {plan_hash[:12]}",
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("plan_hash") != plan_hash:
        raise TesseraError(ErrorCode.KEY_MISSING, "evaluation context belongs to another study")
    context = (directory / str(meta["context_file"])).read_bytes()
    return EvaluationContext(plan_hash, str(meta["fingerprint"]), context)


def import_evaluation_package(directory: Path, data: bytes, manifest: Manifest) -> Path:
    """Verify a custodian's signed package and store its context for the ServerApp."""
    package = verify_package(data, manifest)
    return write_evaluation_context(directory, plan_hash=package.plan_hash,
                                    fingerprint=package.fingerprint, context=package.context)
