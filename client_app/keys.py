"""A site's CKKS key material for a study: generation by the custodian site, storage, loading.

The secret context is generated on the site side and never handed to the coordinator,
which receives only the evaluation context (add-only) and the key fingerprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from client_app.site_dir import SiteDir
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash
from privacy.ckks import CkksKeys, CkksParams, fingerprint_of_secret, generate_keys


@dataclass(frozen=True)
class CoordinatorContext:
    """What the coordinator may hold for a study: the add-only context and its fingerprint."""

    evaluation_context: bytes
    fingerprint: str


def ckks_params(plan: StudyPlan) -> CkksParams:
    """The CKKS parameters a study plan asks for."""
    return CkksParams(
        poly_modulus_degree=plan.he.poly_modulus_degree,
        coeff_mod_bit_sizes=tuple(plan.he.coeff_mod_bit_sizes),
        global_scale_bits=plan.he.global_scale_bits,
    )


def _secret_path(site: SiteDir, digest: str) -> Path:
    return site.keys_dir / f"ckks-{digest[:16]}.secret"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def store_secret_context(site: SiteDir, digest: str, secret_context: bytes) -> None:
    """Keep a study's CKKS secret context in the site's key folder (owner-only)."""
    _write_private(_secret_path(site, digest), secret_context)


def load_secret_context(site: SiteDir, digest: str) -> bytes:
    """The study's CKKS secret context, or KEY_MISSING if this site holds none."""
    path = _secret_path(site, digest)
    if not path.exists():
        raise TesseraError(
            ErrorCode.KEY_MISSING,
            f"site '{site.name}' holds no CKKS key for study {digest[:12]}",
        )
    return path.read_bytes()


def he_keygen(custodian: SiteDir, plan: StudyPlan) -> tuple[CkksKeys, CoordinatorContext]:
    """Generate a fresh CKKS key for one study at the custodian site (a new key per study)."""
    keys = generate_keys(ckks_params(plan))
    digest = plan_hash(plan)
    store_secret_context(custodian, digest, keys.secret_context)
    if fingerprint_of_secret(keys.secret_context) != keys.fingerprint:
        raise TesseraError(ErrorCode.INTERNAL, "CKKS key fingerprint does not verify")
    return keys, CoordinatorContext(keys.evaluation_context, keys.fingerprint)
