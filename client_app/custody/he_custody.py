"""CKKS key custody between sites: the custodian generates, seals and hands out the key.

The key-custodian site generates a fresh CKKS key for each study (rotation by study), keeps
the secret context in its vault, seals a copy to every other site's X25519 key (signed with
its Ed25519 key) and emits a signed evaluation-context package for the coordinator: a
context with no secret, public, relinearisation or Galois keys. A receiving site opens its
sealed copy only after the custodian's signature checks. Every step is a site event for the
audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client_app.custody.ckks_keys import he_keygen, store_secret_context
from client_app.custody.identity import sealing_key, signing_key
from client_app.custody.vault import SiteVault
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash
from privacy.at_rest import atomic_write_bytes
from privacy.ckks import fingerprint_of_secret
from privacy.he_package import build_package
from privacy.manifest import Manifest
from privacy.sealing import inspect_sealed, open_sealed, seal
from privacy.signing import SigningKey

PURPOSE = "ckks-secret-context"
PACKAGE_FILE = "evaluation-context.json"


@dataclass(frozen=True)
class KeygenResult:
    """What the custodian produced: where the sealed copies and the package are."""

    plan_hash: str
    fingerprint: str
    sealed: dict[str, Path]
    package: Path


def _require_identity(vault: SiteVault) -> SigningKey:
    key = signing_key(vault)
    if key is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{vault.site.name}' has no signing key; import its kit first")
    return key


def keygen_and_seal(vault: SiteVault, plan: StudyPlan, manifest: Manifest,
                    out_dir: Path) -> KeygenResult:
    """Generate the study's CKKS key here, seal it to every other site, package the rest."""
    signer = _require_identity(vault)
    digest = plan_hash(plan)
    keys, coordinator_ctx = he_keygen(vault, plan)
    context = {"plan_hash": digest, "fingerprint": keys.fingerprint}
    sealed: dict[str, Path] = {}
    for entry in manifest.sites:
        if entry.name == vault.site.name:
            continue
        blob = seal(keys.secret_context, recipient_public_hex=entry.sealing_public_key,
                    recipient=entry.name, sender=vault.site.name, sender_key=signer,
                    purpose=PURPOSE, context=context)
        path = out_dir / "sealed" / f"{entry.name}.sealed"
        atomic_write_bytes(path, blob)
        sealed[entry.name] = path
    package = build_package(plan_hash=digest, fingerprint=keys.fingerprint,
                            custodian=vault.site.name,
                            evaluation_context=coordinator_ctx.evaluation_context, signer=signer)
    package_path = out_dir / PACKAGE_FILE
    atomic_write_bytes(package_path, package)
    with SiteStore.open(vault.site) as store:
        store.record_event("he_key_generated", plan_hash=digest,
                           details={"fingerprint": keys.fingerprint})
        for name in sealed:
            store.record_event("he_key_sealed", plan_hash=digest,
                               details={"recipient": name, "fingerprint": keys.fingerprint})
    return KeygenResult(digest, keys.fingerprint, sealed, package_path)


def import_sealed(vault: SiteVault, blob: bytes, manifest: Manifest) -> tuple[str, str]:
    """Open this site's sealed copy (custodian's signature first) and keep it in the vault.

    Returns the plan hash and key fingerprint.
    """
    own = sealing_key(vault)
    if own is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{vault.site.name}' has no sealing key; import its kit first")
    header = inspect_sealed(blob)
    custodian = manifest.site(str(header.get("sender", "")))
    secret, context = open_sealed(blob, recipient_key=own, recipient=vault.site.name,
                                  sender_public_hex=custodian.signing_public_key,
                                  purpose=PURPOSE)
    if fingerprint_of_secret(secret) != context.get("fingerprint"):
        raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                           "sealed CKKS key does not match the fingerprint it claims")
    digest = context["plan_hash"]
    store_secret_context(vault, digest, secret)
    with SiteStore.open(vault.site) as store:
        store.record_event("he_key_imported", plan_hash=digest,
                           details={"custodian": custodian.name,
                                    "fingerprint": context["fingerprint"]})
    return digest, context["fingerprint"]
