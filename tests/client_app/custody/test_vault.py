"""The site vault's keystore: full key-derivation cost for a site, a cheap one only for the
throwaway folders of a simulation, both unlocking the same way."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.custody.vault import (
    SIMULATION_ONLY_SCRYPT_N,
    create_vault,
    keystore_path,
    unlock_vault,
)
from client_app.store.folder import init_site_dir
from privacy.at_rest import ScryptParams


def _kdf_n(path: Path) -> int:
    return int(json.loads(path.read_text(encoding="utf-8"))["kdf"]["n"])


def test_a_site_keystore_takes_the_full_scrypt_cost(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "h1", name="h1")
    vault = create_vault(site, "a long passphrase")
    assert _kdf_n(keystore_path(site)) == ScryptParams().n == 2**15
    assert unlock_vault(site, "a long passphrase").key == vault.key


def test_only_a_simulated_site_keystore_takes_the_cheap_cost(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "sim", name="sim")
    vault = create_vault(site, "tessera simulation only", simulation_only=True)
    assert _kdf_n(keystore_path(site)) == SIMULATION_ONLY_SCRYPT_N < ScryptParams().n
    assert unlock_vault(site, "tessera simulation only").key == vault.key
