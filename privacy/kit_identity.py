"""Who a kit belongs to, proven by its keys: ``kit.toml`` checked against the signed manifest.

``kit.toml`` is an unsigned label anyone can edit. A kit is accepted as role R of party P only
when the signed federation manifest inside the same kit gives P the public halves of the
private keys the kit holds: a coordinator kit's signing key is the manifest's coordinator key;
an auditor kit's signing and sealing keys are the auditor's; a site kit's signing, sealing and
node-authentication keys are that site's (whichever are still files: an installed site moves
its signing and sealing keys into its vault, its node-authentication key stays). Relabelling a
kit as another role or party therefore needs that party's private keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from common.errors import ErrorCode, TesseraError
from privacy.manifest import (
    KIT_FILE,
    MANIFEST_FILE,
    NODE_AUTH_KEY_FILE,
    SEALING_KEY_FILE,
    SIGNING_KEY_FILE,
    KitInfo,
    Manifest,
    describe_party,
    load_manifest,
    read_kit_info,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

SIGNING, SEALING, NODE_AUTH = "signing", "sealing", "node-authentication"


@dataclass(frozen=True)
class VerifiedKit:
    """A kit whose ``kit.toml`` the keys it holds and the manifest inside it confirm."""

    folder: Path
    info: KitInfo
    manifest: Manifest

    @property
    def role(self) -> str:
        """``coordinator``, ``site`` or ``auditor``."""
        return self.info.role

    @property
    def party(self) -> str:
        """The site's name, or ``coordinator`` / ``auditor``."""
        return self.info.party


def expected_public_keys(manifest: Manifest, info: KitInfo) -> dict[str, str]:
    """The public keys the manifest gives to the party ``info`` names (normalised)."""
    if info.role in ("coordinator", "auditor") and info.party != info.role:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{KIT_FILE}: a {info.role} kit's party must be {info.role!r}")
    if info.role == "coordinator":
        return {SIGNING: manifest.coordinator_signing_key.lower()}
    if info.role == "auditor":
        return {SIGNING: manifest.auditor_signing_key.lower(),
                SEALING: manifest.auditor_sealing_key.lower()}
    if info.party not in manifest.site_names:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"{KIT_FILE} names site {info.party!r}, which the signed manifest "
                           f"of federation {manifest.name!r} does not list")
    entry = manifest.site(info.party)
    return {SIGNING: entry.signing_public_key.lower(),
            SEALING: entry.sealing_public_key.lower(),
            NODE_AUTH: " ".join(entry.node_auth_public_key.split()[:2])}


def held_public_keys(folder: Path) -> dict[str, str]:
    """The public halves of the private key files in ``folder`` (normalised as above)."""
    held: dict[str, str] = {}
    for name, kind in ((SIGNING_KEY_FILE, SIGNING), (SEALING_KEY_FILE, SEALING)):
        path = folder / name
        if path.is_file():
            raw = read_hex_key(path)
            held[kind] = (SigningKey(raw).public_hex if kind == SIGNING
                          else SealingKey(raw).public_hex)
    path = folder / NODE_AUTH_KEY_FILE
    if path.is_file():
        try:
            key = serialization.load_ssh_private_key(path.read_bytes(), None)
            public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"{NODE_AUTH_KEY_FILE} in {folder} is not an unencrypted "
                               "OpenSSH private key") from None
        held[NODE_AUTH] = " ".join(public.decode("ascii").split()[:2])
    return held


def verify_kit(folder: Path) -> VerifiedKit:
    """Read ``folder``'s ``kit.toml`` and accept it only if the kit's keys prove it.

    NOT_FOUND (no kit.toml or manifest), BAD_SIGNATURE (manifest), CONFIG_INVALID (malformed
    files, another federation), KEY_MISSING (no private key to prove the identity with),
    PERMISSION_DENIED (a site the manifest does not list) or FINGERPRINT_MISMATCH (a key that
    is not the manifest's key for the party kit.toml names).
    """
    folder = Path(folder)
    info = read_kit_info(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"kit {folder} holds no signed manifest ({MANIFEST_FILE}) to prove "
                           f"who its {KIT_FILE} names")
    manifest = load_manifest(folder / MANIFEST_FILE)
    if manifest.name != info.federation:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{KIT_FILE} in {folder} names federation {info.federation!r}, "
                           f"its signed manifest {manifest.name!r}")
    who = describe_party(info.role, info.party)
    expected = expected_public_keys(manifest, info)
    held = held_public_keys(folder)
    proven = [kind for kind in expected if kind in held]
    if not proven:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"{KIT_FILE} in {folder} names {who}, but the kit holds none of the "
                           "private keys the signed manifest gives to that party")
    for kind in proven:
        if held[kind] != expected[kind]:
            raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                               f"{KIT_FILE} in {folder} names {who}, but the kit's {kind} key "
                               f"is not the one the signed manifest gives to {who}")
    return VerifiedKit(folder=folder, info=info, manifest=manifest)


def read_hex_key(path: Path) -> bytes:
    """A raw 32-byte key written as one hex line (CONFIG_INVALID naming the file otherwise)."""
    try:
        raw = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raw = b""
    if len(raw) != 32:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{path.name} in {path.parent} must hold a 32-byte key in hex")
    return raw
