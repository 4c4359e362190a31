"""The site's delta (1/(10 n) per dataset unless set; raising needs confirmation) and its
choice about non-private studies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import LedgerKey, SiteStore
from client_app.store.tables import DatasetVersionRow
from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import DpStep

KEY = LedgerKey(b"k" * 32)


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "h1", name="h1")


@pytest.fixture
def store(site: SiteDir):
    with SiteStore.open(site, ledger_key=KEY) as opened:
        yield opened


def _register(store: SiteStore, dataset: str, rows: int, version: str = "a") -> None:
    with store.transaction(write=True) as session:
        session.add(DatasetVersionRow(
            at=datetime.now(UTC), dataset=dataset, version=version * 64, source_hash="b" * 64,
            source_name="x.csv", source_format="csv", rows=rows, policy="{}", report="{}",
            actor="ops"))


def _record(store: SiteStore, dataset: str = "icu") -> None:
    store.record_release(mechanism=DpStep(1.1, 0.02, 50), kind="dp_sgd", plan_hash="a" * 64,
                         study="s", run_id="r", round=1, dataset_id=dataset,
                         dataset_version="v")


def test_default_delta_is_a_tenth_of_one_over_the_current_versions_rows(
        store: SiteStore) -> None:
    _register(store, "icu", 500)
    delta = store.site_delta("icu")
    assert (delta.value, delta.source, delta.rows) == (pytest.approx(1 / 5000), "rows", 500)
    _register(store, "icu", 2000, version="c")
    assert store.site_delta("icu").value == pytest.approx(1 / 20000)
    assert store.explicit_delta() is None


def test_default_delta_never_rises_above_what_the_ledger_already_used(
        store: SiteStore) -> None:
    _register(store, "icu", 2000)
    _record(store)
    assert store.ledger()[0].delta == pytest.approx(1 / 20000)
    _register(store, "icu", 100, version="c")  # fewer rows: the default would rise
    delta = store.site_delta("icu")
    assert (delta.value, delta.source) == (pytest.approx(1 / 20000), "ledger")


def test_an_unsized_dataset_has_no_default_and_records_nothing(store: SiteStore) -> None:
    with pytest.raises(TesseraError, match="tessera site delta") as info:
        store.site_delta("icu")
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert store.site_delta("icu", rows=50).value == pytest.approx(1 / 500)
    with pytest.raises(TesseraError):
        _record(store)
    assert store.ledger() == []


def test_lowering_the_delta_is_free_and_raising_needs_confirmation(store: SiteStore) -> None:
    _register(store, "icu", 500)
    store.set_delta(1e-6, actor="alice")
    assert store.site_delta("icu").value == 1e-6 and store.site_delta("icu").source == "explicit"
    with pytest.raises(TesseraError, match="requires confirmation") as info:
        store.set_delta(1e-5, actor="alice")
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert store.explicit_delta() == 1e-6
    with pytest.raises(TesseraError, match="requires confirmation"):
        store.set_delta(None, actor="alice")  # back to 1/5000: a raise
    store.set_delta(1e-5, actor="bob", confirm_raise=True)
    assert store.explicit_delta() == 1e-5
    store.set_delta(None, actor="bob", confirm_raise=True)
    assert store.explicit_delta() is None and store.site_delta("icu").source == "rows"
    changes = [e.details for e in store.events(kind="delta_changed")]
    assert changes == [
        {"old": "default", "new": 1e-6, "actor": "alice"},
        {"old": 1e-6, "new": 1e-5, "actor": "bob"},
        {"old": 1e-5, "new": "default", "actor": "bob"},
    ]


def test_an_explicit_delta_above_a_datasets_default_is_a_raise(store: SiteStore) -> None:
    _register(store, "icu", 500)  # default 2e-4
    with pytest.raises(TesseraError, match="icu"):
        store.set_delta(1e-3, actor="alice")
    store.set_delta(1e-4, actor="alice")  # below the default: free


@pytest.mark.parametrize("value", [0.0, 1.0, -1e-5, float("nan"), True])
def test_delta_must_be_between_zero_and_one(store: SiteStore, value: float) -> None:
    with pytest.raises(TesseraError, match="delta") as info:
        store.set_delta(value, actor="alice", confirm_raise=True)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert store.explicit_delta() is None


def test_non_private_studies_are_refused_until_allowed_with_confirmation(
        store: SiteStore) -> None:
    assert not store.allows_non_private()
    with pytest.raises(TesseraError, match="confirmation") as info:
        store.set_allow_non_private(True, actor="alice")
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert store.set_allow_non_private(True, actor="alice", confirm=True)
    assert store.allows_non_private()
    assert not store.set_allow_non_private(True, actor="alice", confirm=True)  # unchanged
    assert store.set_allow_non_private(False, actor="bob")  # refusing again is free
    assert [e.details for e in store.events(kind="non_private_changed")] == [
        {"allowed": True, "actor": "alice"}, {"allowed": False, "actor": "bob"}]


def test_privacy_settings_and_the_ledger_head_cannot_be_put_directly(store: SiteStore) -> None:
    for key in ("privacy_ceiling", "privacy_delta", "allow_non_private", "ledger_head"):
        with pytest.raises(TesseraError) as info:
            store.put_setting(key, "1")
        assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert store.explicit_delta() is None and not store.allows_non_private()
