"""A site's encrypted storage: datasets, secrets and model files, sealed at rest.

Everything sensitive in a site folder goes through the vault: registered datasets, one
file per version (``data/versions/<name>/<version>.enc``; older sites hold one
``data/<name>.enc``), key material (``keys/*.enc``) and model files (``models/*.enc``), each an
AES-256-GCM blob whose header names its role, under the site's data key. The data key is
wrapped in ``keys/keystore.json`` by a key derived from the site passphrase (scrypt), so a
stolen disk reveals nothing without it. Plaintext never touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from client_app.store.folder import SiteDir
from common.errors import ErrorCode, TesseraError
from privacy.at_rest import (
    KEYSTORE_FILE,
    Keystore,
    read_encrypted,
    write_encrypted,
)
from privacy.passphrase import passphrase_from_environment

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[0-9a-f]{64}$")
ROLE_DATASET = "dataset"
ROLE_SECRET = "secret"  # noqa: S105 (a role label)
ROLE_MODEL = "model"


def _checked(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{what} name '{name}' is not allowed")
    return name


def keystore_path(site: SiteDir) -> Path:
    """Where a site's keystore lives."""
    return site.root / KEYSTORE_FILE


@dataclass(frozen=True)
class SiteVault:
    """An unlocked site: encrypted reads and writes under its data key."""

    site: SiteDir
    key: bytes = field(repr=False)

    # -- datasets -----------------------------------------------------------------
    def dataset_path(self, name: str) -> Path:
        """Encrypted file of a registered dataset."""
        return self.site.data_dir / f"{_checked(name, 'dataset')}.enc"

    def has_dataset(self, name: str) -> bool:
        """Whether a dataset of that name is registered."""
        return self.dataset_path(name).exists()

    def write_dataset(self, name: str, content: bytes) -> None:
        """Store a dataset's bytes encrypted."""
        write_encrypted(self.dataset_path(name), self.key, content, role=ROLE_DATASET)

    def read_dataset(self, name: str) -> bytes:
        """A registered dataset's bytes."""
        path = self.dataset_path(name)
        if not path.exists():
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"site '{self.site.name}' has no dataset '{name}' registered")
        return read_encrypted(path, self.key, role=ROLE_DATASET)

    def datasets(self) -> list[str]:
        """Names of the datasets stored the legacy way, one unversioned file each."""
        return sorted(p.stem for p in self.site.data_dir.glob("*.enc"))

    def dataset_version_path(self, name: str, version: str) -> Path:
        """Encrypted file of one version of a dataset (``data/versions/<name>/<version>.enc``)."""
        if not _VERSION.fullmatch(version):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "dataset version must be 64 lowercase hexadecimal characters")
        return self.site.data_dir / "versions" / _checked(name, "dataset") / f"{version}.enc"

    def write_dataset_version(self, name: str, version: str, content: bytes) -> None:
        """Store one version of a dataset encrypted."""
        path = self.dataset_version_path(name, version)
        write_encrypted(path, self.key, content, role=ROLE_DATASET)

    def read_dataset_version(self, name: str, version: str) -> bytes:
        """One stored version of a dataset's bytes."""
        path = self.dataset_version_path(name, version)
        if not path.exists():
            raise TesseraError(ErrorCode.NOT_FOUND, f"site '{self.site.name}' has no stored "
                               f"version {version[:12]} of dataset '{name}'")
        return read_encrypted(path, self.key, role=ROLE_DATASET)

    # -- secrets ------------------------------------------------------------------
    def secret_path(self, name: str) -> Path:
        """Encrypted file of a secret."""
        return self.site.keys_dir / f"{_checked(name, 'secret')}.enc"

    def write_secret(self, name: str, content: bytes) -> None:
        """Store key material encrypted."""
        write_encrypted(self.secret_path(name), self.key, content, role=ROLE_SECRET)

    def read_secret(self, name: str) -> bytes | None:
        """Key material, or None if this site holds no secret of that name."""
        path = self.secret_path(name)
        if not path.exists():
            return None
        return read_encrypted(path, self.key, role=ROLE_SECRET)

    # -- models -------------------------------------------------------------------
    def model_path(self, name: str) -> Path:
        """Encrypted file of a model."""
        return self.site.models_dir / f"{_checked(name, 'model')}.enc"

    def write_model(self, name: str, content: bytes) -> None:
        """Store a model file encrypted."""
        write_encrypted(self.model_path(name), self.key, content, role=ROLE_MODEL)

    def read_model(self, name: str) -> bytes:
        """A stored model file."""
        return read_encrypted(self.model_path(name), self.key, role=ROLE_MODEL)


#: scrypt cost (``n``) of the keystores of SIMULATED sites only (``tessera simulate``): their
#: folders are throwaway and their passphrase is public, so the cost of the key derivation
#: protects nothing there and building a thousand of them should not take minutes. A real
#: site's keystore always takes the full cost (:class:`privacy.at_rest.ScryptParams`).
SIMULATION_ONLY_SCRYPT_N = 2**10


def create_vault(site: SiteDir, passphrase: str, *, simulation_only: bool = False) -> SiteVault:
    """Create the site's keystore (first set-up) and return the unlocked vault.

    ``simulation_only`` (for the throwaway folders of ``tessera simulate``, never a real
    site) derives the key-encryption key at :data:`SIMULATION_ONLY_SCRYPT_N`.
    """
    if simulation_only:
        store = Keystore.create(keystore_path(site), passphrase, n=SIMULATION_ONLY_SCRYPT_N)
    else:
        store = Keystore.create(keystore_path(site), passphrase)
    return SiteVault(site, store.data_key())


def unlock_vault(site: SiteDir, passphrase: str | None = None) -> SiteVault:
    """Unlock a site with its passphrase (from the environment, keyring or a prompt if None)."""
    path = keystore_path(site)
    if not path.exists():
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site '{site.name}' has no keystore; run 'tessera site init' first")
    secret = passphrase if passphrase is not None else passphrase_from_environment()
    store = Keystore.unlock(path, secret)
    if "default" not in store.key_names:
        raise TesseraError(ErrorCode.KEY_MISSING, "the site keystore holds no data key")
    return SiteVault(site, store.data_key())


def open_or_create_vault(site: SiteDir, passphrase: str) -> SiteVault:
    """Unlock the site's vault, creating its keystore on first use."""
    if keystore_path(site).exists():
        return unlock_vault(site, passphrase)
    return create_vault(site, passphrase)


def rotate_passphrase(site: SiteDir, old: str, new: str) -> None:
    """Re-wrap the site's data keys under a new passphrase; no data file is rewritten."""
    Keystore.rotate_passphrase(keystore_path(site), old, new)
