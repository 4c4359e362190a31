"""The site store: migrations, approvals, the ceiling, the delta, settings and events.

The ledger itself is tested in test_ledger.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import LedgerKey, SiteStore
from client_app.store.tables import MIGRATIONS_DIR, SiteTable
from common.errors import ErrorCode, TesseraError
from common.sql import head_revision, make_engine

PLAN_A = "a" * 64
PLAN_B = "b" * 64
KEY = LedgerKey(b"k" * 32)


def _run(store: SiteStore, *, dataset: str = "icu"):
    return store.record_training(
        plan_hash=PLAN_A, study="sepsis", run_id="r1", round=1, dataset_id=dataset,
        dataset_version="v1", noise_multiplier=1.1, sample_rate=0.02, steps=50,
    )


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "sites" / "h1", name="h1")


@pytest.fixture
def store(site: SiteDir):
    with SiteStore.open(site, ledger_key=KEY) as opened:
        opened.set_delta(1e-5, actor="alice")
        yield opened


def test_migrations_create_the_schema_and_stamp_the_head(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    SiteStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"approvals", "ledger", "events", "settings", "alembic_version", "dataset_versions",
            "consent_events", "study_plans", "tasks", "sent_replies"} <= tables
    assert version == [(head_revision(MIGRATIONS_DIR),)]
    assert head_revision(MIGRATIONS_DIR) == "0005"
    assert journal == "wal"


def test_migrations_describe_exactly_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    SiteStore(url).close()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SiteTable.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_reopening_a_store_keeps_its_records(site: SiteDir) -> None:
    with SiteStore.open(site, ledger_key=KEY) as first:
        first.approve(PLAN_A, actor="alice")
        first.set_delta(1e-5, actor="alice")
        _run(first)
    with SiteStore.open(site) as second:
        assert second.is_approved(PLAN_A)
        assert len(second.ledger()) == 1


def test_latest_decision_about_a_plan_wins(store: SiteStore) -> None:
    assert not store.is_approved(PLAN_A)
    store.approve(PLAN_A, actor="alice", note="reviewed")
    assert store.is_approved(PLAN_A)
    store.revoke(PLAN_A, actor="bob")
    assert not store.is_approved(PLAN_A)
    store.approve(PLAN_A, actor="alice")
    store.reject(PLAN_B, actor="alice")
    assert store.is_approved(PLAN_A)
    assert not store.is_approved(PLAN_B)
    decisions = [(r.plan_hash, r.decision, r.actor) for r in store.approvals()]
    assert decisions == [
        (PLAN_A, "approved", "alice"), (PLAN_A, "revoked", "bob"),
        (PLAN_A, "approved", "alice"), (PLAN_B, "rejected", "alice"),
    ]
    assert store.approvals()[0].note == "reviewed"
    assert store.approvals()[0].at.tzinfo is not None


def test_decision_without_actor_is_refused(store: SiteStore) -> None:
    with pytest.raises(TesseraError, match="actor") as info:
        store.approve(PLAN_A, actor=" ")
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert store.approvals() == []


def test_raising_the_ceiling_needs_confirmation(store: SiteStore) -> None:
    assert store.ceiling() == 10.0
    store.set_ceiling(4.0, actor="alice")
    assert store.ceiling() == 4.0
    with pytest.raises(TesseraError, match="requires confirmation") as info:
        store.set_ceiling(8.0, actor="alice")
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert store.ceiling() == 4.0
    store.set_ceiling(8.0, actor="alice", confirm_raise=True)
    assert store.ceiling() == 8.0
    changes = [e.details for e in store.events(kind="ceiling_changed")]
    assert changes[-2:] == [
        {"old": 10.0, "new": 4.0, "actor": "alice"},
        {"old": 4.0, "new": 8.0, "actor": "alice"},
    ]


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_ceiling_must_be_a_positive_finite_number(store: SiteStore, value: float) -> None:
    with pytest.raises(TesseraError, match="ceiling") as info:
        store.set_ceiling(value, actor="alice", confirm_raise=True)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert store.ceiling() == 10.0


def test_init_ceiling_is_stored_and_recorded(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "h2", name="h2", ceiling=3.5)
    with SiteStore.open(site) as store:
        assert store.ceiling() == 3.5
        assert [e.details["actor"] for e in store.events(kind="ceiling_changed")] == ["init"]


def test_events_keep_details_and_filter_by_kind(store: SiteStore) -> None:
    first = store.record_event("study_received", plan_hash=PLAN_A, details={"round": 1})
    store.record_event("update_sent", plan_hash=PLAN_A)
    assert first.details == {"round": 1}
    kinds = [e.kind for e in store.events()]
    assert kinds[-2:] == ["study_received", "update_sent"]
    assert [e.plan_hash for e in store.events(kind="update_sent")] == [PLAN_A]
    with pytest.raises(TesseraError, match="details"):
        store.record_event("bad", details={"value": object()})


def test_two_stores_on_one_file_see_each_others_writes(site: SiteDir) -> None:
    with SiteStore.open(site, ledger_key=KEY) as agent, SiteStore.open(site) as cli:
        cli.approve(PLAN_A, actor="alice")
        assert agent.is_approved(PLAN_A)
        cli.set_delta(1e-5, actor="alice")
        _run(agent)
        assert len(cli.ledger()) == 1
        cli.set_ceiling(2.0, actor="alice")
        assert agent.ceiling() == 2.0


def _store_at_revision_0003(db: Path) -> None:
    """A site database as revision 0003 left it, with two DP-SGD runs in its ledger."""
    from alembic import command

    from common.sql import alembic_config

    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            config = alembic_config(MIGRATIONS_DIR)
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            for round_, noise in ((1, 1.1), (2, 0.7)):
                connection.exec_driver_sql(
                    "INSERT INTO ledger (at, plan_hash, study, round, dataset_id, "
                    "dataset_version, noise_multiplier, sample_rate, steps, delta, epsilon, "
                    "epsilon_cumulative) VALUES ('2026-01-02 03:04:05.000006', ?, 'sepsis', "
                    "?, 'icu', 'v1', ?, 0.02, 50, 1e-05, 0.5, 0.9)",
                    (PLAN_A, round_, noise))
    finally:
        engine.dispose()


def test_revision_0004_turns_dp_sgd_rows_into_mechanism_entries(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    _store_at_revision_0003(db)
    with SiteStore(f"sqlite:///{db}") as store:
        entries = store.ledger()
    assert [(e.kind, e.mechanism_name, e.parameters, e.run_id, e.mac) for e in entries] == [
        ("dp_sgd", "poisson_subsampled_gaussian",
         {"noise_multiplier": 1.1, "sample_rate": 0.02, "steps": 50}, "", None),
        ("dp_sgd", "poisson_subsampled_gaussian",
         {"noise_multiplier": 0.7, "sample_rate": 0.02, "steps": 50}, "", None),
    ]
    assert [(e.round, e.delta, e.epsilon, e.epsilon_cumulative) for e in entries] == [
        (1, 1e-05, 0.5, 0.9), (2, 1e-05, 0.5, 0.9)]
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(ledger)")}
    assert {"noise_multiplier", "sample_rate", "steps"}.isdisjoint(columns)


def test_migrated_rows_are_sealed_once_by_the_key_holder(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    _store_at_revision_0003(db)
    with SiteStore(f"sqlite:///{db}", ledger_key=KEY) as store:
        unsealed = store.verify_ledger()
        assert not unsealed.ok and "not authenticated yet" in unsealed.reason
        assert store.seal_ledger() == 2
        assert store.seal_ledger() == 0
        assert store.verify_ledger().ok
        assert [e.details for e in store.events(kind="ledger_sealed")] == [{"entries": 2}]
        store.set_delta(1e-5, actor="alice")
        _run(store)
        assert store.verify_ledger().ok and len(store.ledger()) == 3


def test_records_after_an_id_are_the_newer_ones_only(store: SiteStore) -> None:
    first = store.record_event("probe", details={"n": 1})
    second = store.record_event("probe", details={"n": 2})
    assert [e.id for e in store.events(kind="probe", after=first.id)] == [second.id]
    assert store.events(kind="probe", after=second.id) == []
    store.approve("a" * 64, actor="op")
    store.reject("a" * 64, actor="op")
    decisions = store.approvals()
    assert [d.decision for d in store.approvals(after=decisions[0].id)] == ["rejected"]
    entry, later = _run(store), _run(store)
    assert [e.id for e in store.ledger(after=entry.id)] == [later.id]
