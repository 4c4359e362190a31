"""A site's own signing and sealing keys, kept in the vault once the kit is imported.

``tessera site import-kit`` installs the kit's keys in ``<site>/kit/``; the first time the
vault is unlocked they are moved into it (encrypted at rest) and the plaintext files are
removed. The node-authentication key stays a file because the SuperNode reads it itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from client_app.custody.vault import SiteVault
from privacy.manifest import SEALING_KEY_FILE, SIGNING_KEY_FILE
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

SIGNING_SECRET = "identity-signing-key"  # noqa: S105 (a vault entry name)
SEALING_SECRET = "identity-sealing-key"  # noqa: S105 (a vault entry name)


def _shred(path: Path) -> None:
    """Overwrite and remove a plaintext key file (best effort on journaling filesystems)."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()


def adopt_kit_secrets(vault: SiteVault) -> None:
    """Move the kit's signing and sealing keys into the vault, if still plaintext."""
    kit = vault.site.kit_dir
    for file_name, secret in ((SIGNING_KEY_FILE, SIGNING_SECRET),
                              (SEALING_KEY_FILE, SEALING_SECRET)):
        path = kit / file_name
        if path.exists():
            raw = bytes.fromhex(path.read_text(encoding="ascii").strip())
            vault.write_secret(secret, raw)
            _shred(path)


def signing_key(vault: SiteVault) -> SigningKey | None:
    """The site's Ed25519 key, or None for an unprovisioned (development) site."""
    adopt_kit_secrets(vault)
    raw = vault.read_secret(SIGNING_SECRET)
    return None if raw is None else SigningKey(raw)


def sealing_key(vault: SiteVault) -> SealingKey | None:
    """The site's X25519 key, or None for an unprovisioned site."""
    adopt_kit_secrets(vault)
    raw = vault.read_secret(SEALING_SECRET)
    return None if raw is None else SealingKey(raw)
