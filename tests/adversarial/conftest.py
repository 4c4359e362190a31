"""Shared set-up for the attacks: a provisioned federation and what its coordinator can forge.

The coordinator, and anyone who reaches the SuperLink with a kit, is treated as actively
malicious: it holds the federation's manifest-signing key, so any manifest it writes verifies.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import client_app.agent.contributions as contributions_module
from client_app.custody.kit import import_site_kit
from client_app.custody.vault import SiteVault, create_vault
from client_app.store.folder import open_site_dir
from privacy.manifest import (
    MANIFEST_FILE,
    SIGNING_KEY_FILE,
    Manifest,
    SiteEntry,
    manifest_content,
    signed_manifest_toml,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from server.provisioning import Federation, init_federation
from tests.conftest import TEST_PASSPHRASE


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return init_federation(tmp_path / "fed", name="adversarial", sites=["a", "b"],
                           archives=False)


def key_of(kit: Path) -> SigningKey:
    """The Ed25519 key a kit holds."""
    return SigningKey(bytes.fromhex((kit / SIGNING_KEY_FILE).read_text().strip()))


def forged_site(name: str, node_auth_public_key: str) -> SiteEntry:
    """A site the coordinator invents, with keys only the coordinator holds."""
    return SiteEntry(name=name, superlink_address="127.0.0.1",
                     node_auth_public_key=node_auth_public_key,
                     sealing_public_key=SealingKey.generate().public_hex,
                     signing_public_key=SigningKey.generate().public_hex)


def coordinator_signed(fed: Federation, sites: tuple[SiteEntry, ...]) -> str:
    """Manifest text listing ``sites``, validly signed with the federation's coordinator key."""
    manifest: Manifest = dataclasses.replace(fed.manifest, sites=sites)
    return signed_manifest_toml(manifest_content(manifest), key_of(fed.coordinator_kit))


def kit_with_manifest(fed: Federation, site: str, manifest_text: str, into: Path) -> Path:
    """A copy of ``site``'s genuine kit whose manifest the coordinator replaced."""
    kit = into / f"{site}-kit"
    shutil.copytree(fed.site_kit(site), kit)
    (kit / MANIFEST_FILE).write_text(manifest_text, encoding="utf-8")
    return kit


def installed_site(kit: Path, root: Path) -> SiteVault:
    """Import ``kit`` into a new site folder at ``root`` and create its vault."""
    import_site_kit(kit, root)
    return create_vault(open_site_dir(root), TEST_PASSPHRASE)


@pytest.fixture
def decryptions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every decryption a site makes of forwarded contributions or attested sums."""
    calls: list[int] = []
    real = contributions_module.decrypt_vector

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(contributions_module, "decrypt_vector", spy)
    return calls
