"""The site's keyed secrets: made once on first use, then the same for every process."""

from __future__ import annotations

import threading
from pathlib import Path

from client_app.custody.site_secrets import (
    SPLIT_SECRET,
    dataset_id_secret,
    ledger_key,
    site_secret,
    split_secret,
)
from client_app.custody.vault import create_vault, unlock_vault
from client_app.store.folder import init_site_dir

PASS = "secrets passphrase"


def test_secrets_are_created_once_encrypted_and_distinct(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "h1", name="h1")
    vault = create_vault(site, PASS)
    split = split_secret(vault)
    assert len(split) == 32 and split_secret(unlock_vault(site, PASS)) == split
    assert dataset_id_secret(vault) != split
    stored = vault.secret_path(SPLIT_SECRET).read_bytes()
    assert split not in stored  # encrypted at rest


def test_racing_creators_agree_on_one_secret(tmp_path: Path) -> None:
    vault = create_vault(init_site_dir(tmp_path / "h1", name="h1"), PASS)
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(site_secret(vault, "raced")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 6 and len(set(seen)) == 1


def test_the_ledger_key_survives_a_passphrase_change(tmp_path: Path) -> None:
    from client_app.custody.vault import rotate_passphrase

    site = init_site_dir(tmp_path / "h1", name="h1")
    before = ledger_key(create_vault(site, PASS))
    rotate_passphrase(site, PASS, "a new passphrase")
    assert ledger_key(unlock_vault(site, "a new passphrase")) == before
