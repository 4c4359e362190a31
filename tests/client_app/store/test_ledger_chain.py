"""The ledger's chain of MACs: any change to the stored rows is found and located."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.ledger_chain import GENESIS, LedgerHead, verify_chain
from client_app.store.site_store import LedgerKey, SiteStore
from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import GaussianRelease

KEY = LedgerKey(b"k" * 32)


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    site = init_site_dir(tmp_path / "h1", name="h1")
    with SiteStore.open(site, ledger_key=KEY) as store:
        store.set_delta(1e-5, actor="alice")
        for round_ in range(1, 5):
            store.record_training(
                plan_hash="a" * 64, study="sepsis", run_id="r1", round=round_,
                dataset_id="icu" if round_ != 3 else "ward", dataset_version="v1",
                noise_multiplier=1.1, sample_rate=0.02, steps=50)
    return site


def _sql(site: SiteDir, *statements: str) -> None:
    with sqlite3.connect(site.db_path) as conn:
        for statement in statements:
            conn.execute(statement)


def _check(site: SiteDir):
    with SiteStore.open(site, ledger_key=KEY) as store:
        return store.verify_ledger()


def test_an_intact_ledger_passes(site: SiteDir) -> None:
    check = _check(site)
    assert (check.ok, check.entries, check.first_bad, check.reason) == (True, 4, None, "")


def test_a_deleted_entry_is_found_at_the_entry_after_it(site: SiteDir) -> None:
    _sql(site, "DELETE FROM ledger WHERE id = 2")
    check = _check(site)
    assert not check.ok and check.first_bad == 3
    assert "deleted" in check.reason


def test_an_edited_epsilon_is_found(site: SiteDir) -> None:
    _sql(site, "UPDATE ledger SET epsilon_cumulative = 0.01 WHERE id = 2")
    check = _check(site)
    assert not check.ok and check.first_bad == 2 and "modified" in check.reason


def test_an_edited_mechanism_parameter_is_found(site: SiteDir) -> None:
    _sql(site, """UPDATE ledger SET parameters =
              '{"noise_multiplier":9.0,"sample_rate":0.02,"steps":50}' WHERE id = 4""")
    assert _check(site).first_bad == 4


def test_two_swapped_entries_are_found(site: SiteDir) -> None:
    with sqlite3.connect(site.db_path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(ledger)") if r[1] != "id"]
        one = conn.execute(f"SELECT {', '.join(cols)} FROM ledger WHERE id = 1").fetchone()
        two = conn.execute(f"SELECT {', '.join(cols)} FROM ledger WHERE id = 2").fetchone()
        assign = ", ".join(f"{c} = ?" for c in cols)
        conn.execute(f"UPDATE ledger SET {assign} WHERE id = 1", two)
        conn.execute(f"UPDATE ledger SET {assign} WHERE id = 2", one)
    check = _check(site)
    assert not check.ok and check.first_bad == 1


def test_a_truncated_tail_is_found_and_names_the_missing_entry(site: SiteDir) -> None:
    _sql(site, "DELETE FROM ledger WHERE id = 4")
    check = _check(site)
    assert not check.ok and check.first_bad == 4
    assert "removed from the end" in check.reason


def test_an_entry_inserted_without_the_key_is_found(site: SiteDir) -> None:
    with SiteStore.open(site, ledger_key=KEY) as store:
        store.record_release(mechanism=GaussianRelease(5.0), kind="statistics",
                             plan_hash="a" * 64, study="sepsis", run_id="r1", round=0,
                             dataset_id="icu", dataset_version="v1")
    _sql(site, "UPDATE ledger SET id = id + 10 WHERE id >= 3",
         "UPDATE ledger SET id = 3 WHERE id = 15")  # the last entry now sits third
    check = _check(site)
    assert not check.ok and check.first_bad == 3


def test_a_row_added_with_a_forged_mac_is_found(site: SiteDir) -> None:
    _sql(site, "INSERT INTO ledger (at, kind, mechanism, parameters, plan_hash, study, run_id, "
               "round, dataset_id, dataset_version, delta, epsilon, epsilon_cumulative, mac) "
               "SELECT at, kind, mechanism, parameters, plan_hash, study, run_id, round, "
               "dataset_id, dataset_version, delta, epsilon, epsilon_cumulative, mac "
               "FROM ledger WHERE id = 4")
    check = _check(site)
    assert not check.ok and check.first_bad == 5


def test_an_emptied_ledger_with_its_head_left_is_found(site: SiteDir) -> None:
    _sql(site, "DELETE FROM ledger")
    check = _check(site)
    assert not check.ok and check.first_bad == 4


def test_a_removed_or_forged_head_is_found(site: SiteDir) -> None:
    _sql(site, "UPDATE settings SET value = replace(value, '\"count\": 4', '\"count\": 3') "
               "WHERE key = 'ledger_head'")
    assert not _check(site).ok
    _sql(site, "DELETE FROM settings WHERE key = 'ledger_head'")
    check = _check(site)
    assert not check.ok and "head is missing" in check.reason


def test_a_broken_ledger_records_nothing(site: SiteDir) -> None:
    _sql(site, "DELETE FROM ledger WHERE id = 4")
    with SiteStore.open(site, ledger_key=KEY) as store, pytest.raises(TesseraError) as info:
        store.record_training(plan_hash="a" * 64, study="s", run_id="r", round=9,
                              dataset_id="icu", dataset_version="v1", noise_multiplier=1.1,
                              sample_rate=0.02, steps=50)
    assert info.value.code is ErrorCode.DATA_INVALID
    assert "entry 4" in info.value.message
    with SiteStore.open(site) as store:
        assert [e.id for e in store.ledger()] == [1, 2, 3]


def test_the_head_is_authenticated() -> None:
    head = LedgerHead(count=2, last_id=7, mac="f" * 64)
    text = head.to_setting(KEY)
    assert LedgerHead.from_setting(text, KEY) == head
    assert LedgerHead.from_setting(text, LedgerKey(b"x" * 32)) is None
    assert LedgerHead.from_setting(text.replace('"count": 2', '"count": 1'), KEY) is None
    assert LedgerHead.from_setting("not json", KEY) is None


def test_an_empty_ledger_without_head_is_intact() -> None:
    assert verify_chain([], None, KEY).ok
    assert GENESIS == "0" * 64


def test_the_ledger_key_is_never_printed() -> None:
    assert "k" * 32 not in repr(KEY)
    with pytest.raises(TesseraError):
        LedgerKey(b"short")
