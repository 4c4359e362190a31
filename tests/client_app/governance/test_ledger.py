"""The ledger's integrity as the vault holder checks it: sealing entries made before the
ledger was authenticated, and the vault's anchor that catches a ledger cut back whole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault, create_vault
from client_app.governance.ledger import (
    ANCHOR_SECRET,
    check_ledger,
    keyed_store,
    require_intact_ledger,
)
from client_app.store.folder import init_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError


@pytest.fixture
def vault(tmp_path: Path) -> SiteVault:
    site = init_site_dir(tmp_path / "h1", name="h1")
    vault = create_vault(site, "ledger test passphrase")
    with SiteStore.open(site) as store:
        store.set_delta(1e-5, actor="ops")
    return vault


def _record(vault: SiteVault, rounds: range) -> None:
    with keyed_store(vault) as store:
        for round_ in rounds:
            store.record_training(plan_hash="a" * 64, study="s", run_id="r", round=round_,
                                  dataset_id="icu", dataset_version="v1",
                                  noise_multiplier=1.1, sample_rate=0.02, steps=50)


def _sql(vault: SiteVault, *statements: str) -> None:
    with sqlite3.connect(vault.site.db_path) as conn:
        for statement in statements:
            conn.execute(statement)


def test_the_ledger_key_comes_from_the_vault_and_is_stable(vault: SiteVault,
                                                          tmp_path: Path) -> None:
    assert ledger_key(vault) == ledger_key(vault)
    other = create_vault(init_site_dir(tmp_path / "h2", name="h2"), "another passphrase")
    assert ledger_key(other) != ledger_key(vault)
    assert not list(vault.site.keys_dir.glob("ledger*"))  # derived, never stored


def test_an_intact_ledger_passes_and_anchors_its_length_in_the_vault(vault: SiteVault) -> None:
    assert check_ledger(vault).ok
    _record(vault, range(1, 4))
    check = check_ledger(vault)
    assert (check.ok, check.entries) == (True, 3)
    assert vault.read_secret(ANCHOR_SECRET) is not None
    require_intact_ledger(vault, SiteStore.open(vault.site, ledger_key=ledger_key(vault)))


def test_entries_from_before_authentication_are_sealed_on_first_check(
        vault: SiteVault) -> None:
    _record(vault, range(1, 3))
    _sql(vault, "UPDATE ledger SET mac = NULL",
         "DELETE FROM settings WHERE key = 'ledger_head'")  # as revision 0004 leaves them
    check = check_ledger(vault)
    assert check.ok and check.entries == 2
    with SiteStore.open(vault.site) as store:
        assert all(e.mac for e in store.ledger())
        assert len(store.events(kind="ledger_sealed")) == 1


def test_unmaced_entries_are_not_sealed_once_the_vault_has_seen_the_ledger(
        vault: SiteVault) -> None:
    _record(vault, range(1, 3))
    assert check_ledger(vault).ok
    _sql(vault, "UPDATE ledger SET mac = NULL",
         "DELETE FROM settings WHERE key = 'ledger_head'")
    check = check_ledger(vault)
    assert not check.ok and check.first_bad == 1


def test_a_ledger_emptied_with_its_head_is_caught_by_the_anchor(vault: SiteVault) -> None:
    _record(vault, range(1, 4))
    assert check_ledger(vault).ok
    _sql(vault, "DELETE FROM ledger", "DELETE FROM settings WHERE key = 'ledger_head'")
    check = check_ledger(vault)
    assert not check.ok and check.first_bad == 3
    assert "held 3" in check.reason
    with pytest.raises(TesseraError, match="entry 3") as info:
        require_intact_ledger(vault, SiteStore.open(vault.site, ledger_key=ledger_key(vault)))
    assert info.value.code is ErrorCode.DATA_INVALID


def test_a_ledger_rolled_back_to_an_older_copy_is_caught(vault: SiteVault) -> None:
    _record(vault, range(1, 3))
    old = vault.site.db_path.read_bytes()
    _record(vault, range(3, 5))
    assert check_ledger(vault).ok
    for suffix in ("-wal", "-shm"):
        Path(f"{vault.site.db_path}{suffix}").unlink(missing_ok=True)
    vault.site.db_path.write_bytes(old)  # a consistent older ledger with its own head
    with SiteStore.open(vault.site, ledger_key=ledger_key(vault)) as store:
        assert len(store.ledger()) == 2 and store.verify_ledger().ok  # the chain alone passes
    check = check_ledger(vault)
    assert not check.ok and check.first_bad == 4
