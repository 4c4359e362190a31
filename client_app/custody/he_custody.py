"""CKKS key custody between sites: the custodian generates, seals and hands out the key.

The key-custodian site generates a fresh CKKS key for each study (rotation by study), keeps
the secret context in its vault, and seals a copy (signed with its Ed25519 key) to each
recipient its operator *confirmed*: the coordinator writes the manifest, so the manifest's
site list alone is not trusted with the key. Each copy, and the custodian's own vault, carries
the custodian-signed list of the key's holders (:mod:`client_app.custody.key_holders`). The
custodian also emits a signed evaluation-context package for the coordinator: a context with
no secret, public, relinearisation or Galois keys. A receiving site opens its sealed copy only
after the custodian's signatures check, and never lets a second key replace the one it holds
for a study. Every step is a site event for the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from client_app.custody.ckks_keys import he_keygen, secret_name, store_secret_context
from client_app.custody.identity import sealing_key, signing_key
from client_app.custody.key_holders import (
    pack,
    sign_holders,
    store_holders,
    unpack,
    verify_holders,
)
from client_app.custody.vault import SiteVault
from client_app.store.events import SiteEvent
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash
from privacy.at_rest import atomic_write_bytes
from privacy.ckks import fingerprint_of_secret
from privacy.he_package import build_package
from privacy.manifest import Manifest, SiteEntry
from privacy.sealing import inspect_sealed, open_sealed, seal
from privacy.signing import SigningKey, fingerprint

PURPOSE = "ckks-study-key"
PACKAGE_FILE = "evaluation-context.json"


@dataclass(frozen=True)
class KeygenResult:
    """What the custodian produced: where the sealed copies and the package are."""

    plan_hash: str
    fingerprint: str
    sealed: dict[str, Path]
    package: Path
    holders: dict[str, str]


@dataclass(frozen=True)
class Recipient:
    """A site the study key would be sealed to, as the operator must confirm it."""

    name: str
    signing_fingerprint: str
    sealing_fingerprint: str


def _require_identity(vault: SiteVault, manifest: Manifest) -> SigningKey:
    key = signing_key(vault)
    if key is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{vault.site.name}' has no signing key; import its kit first")
    if manifest.site(vault.site.name).signing_public_key.lower() != key.public_hex:
        raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                           f"the manifest gives site '{vault.site.name}' another signing key "
                           "than the one in its vault")
    return key


def recipients_of(manifest: Manifest, names: Sequence[str], *,
                  custodian: str) -> tuple[Recipient, ...]:
    """The recipients ``names`` as the operator must confirm them (name, key fingerprints).

    Refuses (NOT_FOUND) a name the manifest does not list; the custodian itself and repeated
    names are dropped."""
    chosen: list[SiteEntry] = []
    for name in dict.fromkeys(names):
        entry = manifest.site(name)
        if entry.name != custodian:
            chosen.append(entry)
    return tuple(Recipient(e.name, fingerprint(e.signing_public_key),
                           fingerprint(e.sealing_public_key)) for e in chosen)


def keygen_and_seal(vault: SiteVault, plan: StudyPlan, manifest: Manifest, out_dir: Path, *,
                    recipients: Sequence[str], actor: str) -> KeygenResult:
    """Generate the study's CKKS key here and seal it to the confirmed ``recipients`` only.

    ``recipients`` are site names the operator ``actor`` confirmed (NOT_FOUND for a name the
    manifest does not list; nothing is generated or written then). The confirmation, the
    holders and each sealed copy are recorded as site events.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, "actor: who confirmed the recipients")
    if isinstance(recipients, str):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "recipients: a list of site names")
    signer = _require_identity(vault, manifest)
    confirmed = recipients_of(manifest, recipients, custodian=vault.site.name)
    digest = plan_hash(plan)
    holders = {vault.site.name: signer.public_hex} | {
        r.name: manifest.site(r.name).signing_public_key.lower() for r in confirmed}
    with SiteStore.open(vault.site) as store:
        store.record_event(SiteEvent.HE_RECIPIENTS_CONFIRMED, plan_hash=digest, details={
            "actor": actor, "confirmed_by": actor,
            "recipients": [{"site": r.name, "signing_key": r.signing_fingerprint,
                            "sealing_key": r.sealing_fingerprint} for r in confirmed]})
    keys, coordinator_ctx = he_keygen(vault, plan)
    document = sign_holders(plan_hash=digest, fingerprint=keys.fingerprint,
                            custodian=vault.site.name, holders=holders, signer=signer)
    store_holders(vault, digest, document)
    context = {"plan_hash": digest, "fingerprint": keys.fingerprint}
    sealed: dict[str, Path] = {}
    for recipient in confirmed:
        entry = manifest.site(recipient.name)
        blob = seal(pack(document, keys.secret_context),
                    recipient_public_hex=entry.sealing_public_key, recipient=entry.name,
                    sender=vault.site.name, sender_key=signer, purpose=PURPOSE, context=context)
        path = out_dir / "sealed" / f"{entry.name}.sealed"
        atomic_write_bytes(path, blob)
        sealed[entry.name] = path
    package = build_package(plan_hash=digest, fingerprint=keys.fingerprint,
                            custodian=vault.site.name,
                            evaluation_context=coordinator_ctx.evaluation_context, signer=signer)
    package_path = out_dir / PACKAGE_FILE
    atomic_write_bytes(package_path, package)
    with SiteStore.open(vault.site) as store:
        store.record_event(SiteEvent.HE_KEY_GENERATED, plan_hash=digest,
                           details={"fingerprint": keys.fingerprint,
                                    "holders": sorted(holders)})
        for name in sealed:
            store.record_event(SiteEvent.HE_KEY_SEALED, plan_hash=digest,
                               details={"recipient": name, "fingerprint": keys.fingerprint})
    return KeygenResult(digest, keys.fingerprint, sealed, package_path, holders)


def import_sealed(vault: SiteVault, blob: bytes, manifest: Manifest) -> tuple[str, str]:
    """Open this site's sealed copy (custodian's signatures first) and keep it in the vault,
    with the custodian-signed list of the key's holders.

    Refuses a holders list that leaves this site out or names a site or key this site's
    manifest does not, and a second, different key for a study this site already holds a key
    for (DUPLICATE). Returns the plan hash and key fingerprint.
    """
    own = sealing_key(vault)
    if own is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{vault.site.name}' has no sealing key; import its kit first")
    header = inspect_sealed(blob)
    custodian = manifest.site(str(header.get("sender", "")))
    plaintext, context = open_sealed(blob, recipient_key=own, recipient=vault.site.name,
                                     sender_public_hex=custodian.signing_public_key,
                                     purpose=PURPOSE)
    document, secret = unpack(plaintext)
    key_fingerprint = fingerprint_of_secret(secret)
    if key_fingerprint != context.get("fingerprint"):
        raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                           "sealed CKKS key does not match the fingerprint it claims")
    digest = context.get("plan_hash", "")
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise TesseraError(ErrorCode.DATA_INVALID, "sealed CKKS key: malformed plan hash")
    holders = verify_holders(document, custodian=custodian.name,
                             custodian_public=custodian.signing_public_key,
                             plan_hash=digest, fingerprint=key_fingerprint)
    _check_holders(holders, manifest, site=vault.site.name)
    held = vault.read_secret(secret_name(digest))
    if held is not None and fingerprint_of_secret(held) != key_fingerprint:
        raise TesseraError(ErrorCode.DUPLICATE,
                           f"site '{vault.site.name}' already holds another CKKS key for study "
                           f"{digest[:12]}; a second key does not replace it")
    store_secret_context(vault, digest, secret)
    store_holders(vault, digest, document)
    with SiteStore.open(vault.site) as store:
        store.record_event(SiteEvent.HE_KEY_IMPORTED, plan_hash=digest,
                           details={"custodian": custodian.name, "fingerprint": key_fingerprint,
                                    "holders": sorted(holders)})
    return digest, key_fingerprint


def _check_holders(holders: dict[str, str], manifest: Manifest, *, site: str) -> None:
    if site not in holders:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"the custodian's list of key holders does not name site '{site}'")
    listed = {entry.name: entry.signing_public_key.lower() for entry in manifest.sites}
    for name, key in holders.items():
        if listed.get(name) != key:
            raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                               f"the custodian's list of key holders gives site {name!r} a key "
                               "this site's manifest does not")
