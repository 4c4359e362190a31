"""A site's CKKS key material for a study: generation by the custodian site, storage, loading.

The secret context is generated on the site side and never handed to the coordinator,
which receives only the evaluation context (add-only) and the key fingerprint. At the site
it is stored encrypted in the vault (role "secret"), one key per study.
"""

from __future__ import annotations

from dataclasses import dataclass

from client_app.custody.vault import SiteVault
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


def secret_name(digest: str) -> str:
    """Vault name of a study's CKKS secret context."""
    return f"ckks-{digest[:16]}"


def store_secret_context(vault: SiteVault, digest: str, secret_context: bytes) -> None:
    """Keep a study's CKKS secret context in the site's vault (encrypted at rest)."""
    vault.write_secret(secret_name(digest), secret_context)


def load_secret_context(vault: SiteVault, digest: str) -> bytes:
    """The study's CKKS secret context, or KEY_MISSING if this site holds none."""
    secret = vault.read_secret(secret_name(digest))
    if secret is None:
        raise TesseraError(
            ErrorCode.KEY_MISSING,
            f"site '{vault.site.name}' holds no CKKS key for study {digest[:12]}",
        )
    return secret


def he_keygen(custodian: SiteVault, plan: StudyPlan) -> tuple[CkksKeys, CoordinatorContext]:
    """Generate a fresh CKKS key for one study at the custodian site (a new key per study)."""
    keys = generate_keys(ckks_params(plan))
    digest = plan_hash(plan)
    store_secret_context(custodian, digest, keys.secret_context)
    if fingerprint_of_secret(keys.secret_context) != keys.fingerprint:
        raise TesseraError(ErrorCode.INTERNAL, "CKKS key fingerprint does not verify")
    return keys, CoordinatorContext(keys.evaluation_context, keys.fingerprint)
