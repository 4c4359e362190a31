"""The site's own keyed secrets, each created on first use and kept in the vault.

- ``split-key``: keys each patient's train/held-out side (:mod:`common.splits`), so a
  row's side is fixed per site and dataset across studies and plan seeds;
- ``dataset-id-key``: keys the digest that stands for a dataset version outside the site
  (:mod:`client_app.datasets.identity`), so the coordinator never learns a content hash;
- the ledger MAC key is not stored: it is derived from the vault's data key (HKDF-SHA256),
  so it exists wherever the vault can be unlocked and changes with nothing else.

Two processes creating a secret at once agree on one: the file is created without
overwriting and whoever loses the race reads the winner's.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from client_app.custody.vault import ROLE_SECRET, SiteVault
from client_app.store.ledger_chain import LedgerKey
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from privacy.at_rest import encrypt_blob

SPLIT_SECRET = "split-key"  # noqa: S105 (a vault entry name)
DATASET_ID_SECRET = "dataset-id-key"  # noqa: S105 (a vault entry name)
SECRET_BYTES = 32
_LEDGER_INFO = b"tessera/ledger-mac/v1"


def site_secret(vault: SiteVault, name: str) -> bytes:
    """The vault secret ``name``: 32 random bytes made on first use, the same ever after."""
    existing = vault.read_secret(name)
    if existing is not None:
        return existing
    blob = encrypt_blob(vault.key, os.urandom(SECRET_BYTES), role=ROLE_SECRET)
    try:
        atomic_write_bytes(vault.secret_path(name), blob, overwrite=False)
    except TesseraError as err:
        if err.code is not ErrorCode.DUPLICATE:
            raise
    stored = vault.read_secret(name)
    assert stored is not None
    return stored


def split_secret(vault: SiteVault) -> bytes:
    """The key of this site's train/held-out assignment."""
    return site_secret(vault, SPLIT_SECRET)


def dataset_id_secret(vault: SiteVault) -> bytes:
    """The key of the digests that stand for this site's dataset versions elsewhere."""
    return site_secret(vault, DATASET_ID_SECRET)


def ledger_key(vault: SiteVault) -> LedgerKey:
    """The key that authenticates this site's privacy ledger (derived, never stored)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_LEDGER_INFO).derive(vault.key)
    return LedgerKey(derived)
