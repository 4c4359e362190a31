"""A new site's first steps: check the site kit, choose the passphrase, create the keystore.

The desktop app's first-run wizard and the ``tessera site`` commands do the same three
things with these functions: :func:`preview_kit` verifies a kit completely and says whom it
is for and who signed it (the coordinator key's fingerprint, to compare over the phone)
without writing anything; :func:`import_kit` installs it (``tessera site import-kit``);
:func:`passphrase_strength` rates a proposed passphrase; :func:`create_keystore` creates the
site's keystore under it and moves the kit's keys into it (``tessera site unlock-check``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from client_app.custody.identity import adopt_kit_secrets
from client_app.custody.kit import import_site_kit, inspect_site_kit
from client_app.custody.vault import SiteVault, keystore_path, open_or_create_vault
from client_app.store.folder import open_site_dir
from common.errors import ErrorCode, TesseraError
from common.workdir import site_config
from privacy.signing import fingerprint

#: The shortest passphrase the wizard accepts, and the estimated strength it asks for.
MIN_LENGTH = 12
MIN_BITS = 60.0
_COMMON = ("password", "passphrase", "tessera", "hospital", "qwerty", "123456", "letmein",
           "welcome", "admin", "secret", "site")


@dataclass(frozen=True)
class KitPreview:
    """A verified site kit, before or after it is installed."""

    site: str
    federation: str
    coordinator_key: str
    coordinator_fingerprint: str
    superlink: str
    sites: tuple[str, ...]


@dataclass(frozen=True)
class Strength:
    """A passphrase's estimated strength: 0 (unusable) to 4 (strong), and why."""

    score: int
    bits: float
    label: str
    advice: str

    @property
    def acceptable(self) -> bool:
        return self.score >= 2


def preview_kit(kit: Path, *, expected_coordinator_key: str | None = None) -> KitPreview:
    """Verify ``kit`` (signature, keys, CA) and say whom it is for; writes nothing."""
    info, manifest = inspect_site_kit(kit, expected_coordinator_key=expected_coordinator_key)
    entry = manifest.site(info.party)
    return KitPreview(site=info.party, federation=manifest.name,
                      coordinator_key=manifest.coordinator_signing_key,
                      coordinator_fingerprint=fingerprint(manifest.coordinator_signing_key),
                      superlink=f"{entry.superlink_address}:{manifest.superlink_port}",
                      sites=tuple(manifest.site_names))


def import_kit(kit: Path, site_dir: Path, *,
               expected_coordinator_key: str | None = None) -> KitPreview:
    """Install ``kit`` into ``site_dir`` after the same checks (creates the site folder)."""
    preview = preview_kit(kit, expected_coordinator_key=expected_coordinator_key)
    import_site_kit(kit, site_dir, expected_coordinator_key=preview.coordinator_key)
    return preview


def _pool(text: str) -> int:
    pool = 0
    for pattern, size in ((r"[a-z]", 26), (r"[A-Z]", 26), (r"[0-9]", 10), (r"[^A-Za-z0-9]", 33)):
        if re.search(pattern, text):
            pool += size
    return pool


def passphrase_strength(text: str) -> Strength:
    """Rate a passphrase: length and variety, discounted for repeats and common words.

    A rough estimate that errs on the cautious side; it never sees a stored passphrase.
    """
    if len(text) < MIN_LENGTH:
        return Strength(0, 0.0, "too short",
                        f"Use at least {MIN_LENGTH} characters; four or more unrelated words "
                        "make a passphrase that is easy to type and hard to guess.")
    distinct = len(set(text))
    bits = len(text) * math.log2(max(_pool(text), 2)) * min(1.0, distinct / 10)
    lowered = text.lower()
    common = [w for w in _COMMON if w in lowered]
    bits -= 25.0 * len(common)
    if re.search(r"(.)\1\1", text):
        bits -= 10.0
    bits = max(bits, 0.0)
    if bits < MIN_BITS * 0.75:
        score, label = 1, "weak"
    elif bits < MIN_BITS:
        score, label = 2, "fair"
    elif bits < MIN_BITS * 1.5:
        score, label = 3, "good"
    else:
        score, label = 4, "strong"
    advice = ("Avoid common words such as " + ", ".join(repr(w) for w in common) + "."
              if common else "Longer is stronger; a passphrase manager can keep it."
              if score < 4 else "A strong passphrase. Keep it where only site operators can "
              "reach it: without it the site's data cannot be read.")
    return Strength(score, round(bits, 1), label, advice)


def site_state(site_dir: Path) -> str:
    """``"new"`` (missing or empty folder), ``"kit"`` (kit imported, no keystore yet),
    ``"ready"`` (a keystore exists) or ``"other"`` (a folder with other content)."""
    root = Path(site_dir).expanduser()
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return "new"
    if not site_config(root).is_file():
        return "other"
    return "ready" if keystore_path(open_site_dir(root)).exists() else "kit"


def create_keystore(site_dir: Path, passphrase: str) -> SiteVault:
    """Create the site's keystore under ``passphrase`` (refused if the passphrase is weak)."""
    strength = passphrase_strength(passphrase)
    if not strength.acceptable:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"passphrase: {strength.label}; {strength.advice}")
    site = open_site_dir(site_dir)
    if keystore_path(site).exists():
        raise TesseraError(ErrorCode.DUPLICATE,
                           f"site '{site.name}' already has a keystore; unlock it instead")
    vault = open_or_create_vault(site, passphrase)
    adopt_kit_secrets(vault)
    return vault
