"""The site store: migrations, approvals, the privacy ledger, the ceiling and events."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import client_app.store.site_store as store_module
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from client_app.store.tables import MIGRATIONS_DIR, SiteTable
from common.errors import ErrorCode, TesseraError
from common.sql import head_revision, make_engine
from privacy.accounting import DpStep, epsilon_for_history

PLAN_A = "a" * 64
PLAN_B = "b" * 64
DELTA = 1e-5


def _run(store: SiteStore, *, plan: str = PLAN_A, dataset: str = "icu", round_: int = 1,
         noise: float = 1.1, rate: float = 0.02, steps: int = 50, delta: float = DELTA):
    return store.record_training(
        plan_hash=plan, study="sepsis", round=round_, dataset_id=dataset,
        dataset_version="v1", noise_multiplier=noise, sample_rate=rate, steps=steps,
        delta=delta,
    )


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "sites" / "h1", name="h1")


@pytest.fixture
def store(site: SiteDir):
    with SiteStore.open(site) as opened:
        yield opened


def test_migrations_create_the_schema_and_stamp_the_head(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    SiteStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"approvals", "ledger", "events", "settings", "alembic_version", "dataset_versions",
            "consent_events", "study_plans"} <= tables
    assert version == [(head_revision(MIGRATIONS_DIR),)]
    assert head_revision(MIGRATIONS_DIR) == "0003"
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
    with SiteStore.open(site) as first:
        first.approve(PLAN_A, actor="alice")
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


def test_cumulative_epsilon_grows_across_rounds_and_plans(store: SiteStore) -> None:
    entries = [
        _run(store, plan=PLAN_A, round_=1),
        _run(store, plan=PLAN_A, round_=2),
        _run(store, plan=PLAN_B, round_=1, noise=0.9, rate=0.05, steps=20),
    ]
    cumulative = [e.epsilon_cumulative for e in entries]
    assert cumulative[0] < cumulative[1] < cumulative[2]
    assert entries[0].epsilon == pytest.approx(entries[0].epsilon_cumulative)
    whole = [DpStep(1.1, 0.02, 50), DpStep(1.1, 0.02, 50), DpStep(0.9, 0.05, 20)]
    assert cumulative[2] == epsilon_for_history(whole, delta=DELTA)
    assert entries[2].epsilon == epsilon_for_history(whole[2:], delta=DELTA)
    assert store.dp_history("icu") == whole
    assert [e.id for e in store.ledger()] == [e.id for e in entries]


def test_separate_datasets_have_independent_budgets(store: SiteStore) -> None:
    _run(store, dataset="icu")
    _run(store, dataset="icu", round_=2)
    other = _run(store, dataset="ward", round_=1)
    assert other.epsilon_cumulative == other.epsilon
    assert [e.dataset_id for e in store.ledger(dataset_id="ward")] == ["ward"]
    assert len(store.dp_history("icu")) == 2
    assert store.dp_history("unknown") == []


def test_projected_epsilon_composes_history_with_the_next_run(store: SiteStore) -> None:
    _run(store)
    extra = [DpStep(1.1, 0.02, 50)]
    projected = store.projected_epsilon("icu", extra, delta=DELTA)
    assert projected == epsilon_for_history([DpStep(1.1, 0.02, 50), *extra], delta=DELTA)
    assert store.projected_epsilon("ward", [], delta=DELTA) == 0.0
    assert _run(store, round_=2).epsilon_cumulative == projected


def test_invalid_training_parameters_are_refused_and_not_recorded(store: SiteStore) -> None:
    with pytest.raises(TesseraError, match="steps"):
        _run(store, steps=0)
    with pytest.raises(TesseraError, match="delta"):
        _run(store, delta=1.5)
    with pytest.raises(TesseraError, match="round"):
        _run(store, round_=-1)
    assert store.ledger() == []


def test_ledger_record_serialises_every_field(store: SiteStore) -> None:
    data = _run(store).to_json()
    for key in ("noise_multiplier", "sample_rate", "steps", "delta", "epsilon",
                "epsilon_cumulative", "plan_hash", "study", "round", "dataset_id",
                "dataset_version", "at"):
        assert key in data
    assert isinstance(data["at"], str) and data["at"].endswith("+00:00")


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
    with SiteStore.open(site) as agent, SiteStore.open(site) as cli:
        cli.approve(PLAN_A, actor="alice")
        assert agent.is_approved(PLAN_A)
        _run(agent)
        assert len(cli.ledger()) == 1
        cli.set_ceiling(2.0, actor="alice")
        assert agent.ceiling() == 2.0


def test_concurrent_writers_keep_cumulative_epsilon_consistent(site: SiteDir) -> None:
    errors: list[BaseException] = []

    def write(plan: str) -> None:
        try:
            with SiteStore.open(site) as own:
                for round_ in range(6):
                    _run(own, plan=plan, round_=round_)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in (PLAN_A, PLAN_B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with SiteStore.open(site) as store:
        entries = store.ledger(dataset_id="icu")
    assert len(entries) == 12
    for n, entry in enumerate(entries, start=1):
        prefix = [e.step for e in entries[:n]]
        assert entry.epsilon_cumulative == epsilon_for_history(prefix, delta=DELTA)


def test_a_run_recorded_meanwhile_is_composed_into_the_cumulative(
    site: SiteDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_module.epsilon_for_history
    calls: list[int] = []

    def racing(history, *, delta):
        calls.append(len(history))
        if len(calls) == 2:  # the agent composed its history: another process writes now
            monkeypatch.setattr(store_module, "epsilon_for_history", real)
            _run(other, plan=PLAN_B)
        return real(history, delta=delta)

    with SiteStore.open(site) as agent, SiteStore.open(site) as other:
        monkeypatch.setattr(store_module, "epsilon_for_history", racing)
        entry = _run(agent)
        assert [e.plan_hash for e in agent.ledger()] == [PLAN_B, PLAN_A]
    assert calls == [1, 1]
    step = DpStep(1.1, 0.02, 50)
    assert entry.epsilon_cumulative == epsilon_for_history([step, step], delta=DELTA)


def test_ledger_refuses_a_run_past_the_ceiling_and_stores_nothing(store: SiteStore) -> None:
    first = _run(store)
    projected = epsilon_for_history([DpStep(1.1, 0.02, 50)] * 2, delta=DELTA)
    store.set_ceiling((first.epsilon_cumulative + projected) / 2, actor="alice")
    events_before = store.events()
    with pytest.raises(TesseraError) as info:
        _run(store, round_=2)
    assert info.value.code is ErrorCode.BUDGET_EXCEEDED
    message = info.value.message
    assert "'icu'" in message
    assert f"{projected:.3f}" in message and f"{store.ceiling():.3f}" in message
    assert [e.id for e in store.ledger()] == [first.id]
    assert store.events() == events_before


def test_ledger_refusal_is_per_dataset(store: SiteStore) -> None:
    first = _run(store)
    store.set_ceiling(first.epsilon_cumulative * 1.01, actor="alice")
    with pytest.raises(TesseraError, match="'icu'"):
        _run(store, round_=2)
    assert _run(store, dataset="ward").epsilon_cumulative <= store.ceiling()


def test_a_run_reaching_the_ceiling_exactly_is_allowed(store: SiteStore) -> None:
    step = DpStep(1.1, 0.02, 50)
    store.set_ceiling(store.projected_epsilon("icu", [step], delta=DELTA), actor="alice")
    entry = _run(store)
    assert entry.epsilon_cumulative == store.ceiling()
    with pytest.raises(TesseraError, match="ceiling"):
        _run(store, round_=2)


def test_check_training_answers_before_any_run(store: SiteStore) -> None:
    step = DpStep(1.1, 0.02, 50)
    _run(store)
    check = store.check_training("icu", [step], delta=DELTA)
    assert check.dataset_id == "icu"
    assert check.projected == store.projected_epsilon("icu", [step], delta=DELTA)
    assert check.ceiling == store.ceiling() and check.allowed
    store.set_ceiling(check.projected / 2, actor="alice")
    refused = store.check_training("icu", [step], delta=DELTA)
    assert not refused.allowed
    assert refused.refusal().code is ErrorCode.BUDGET_EXCEEDED
    assert len(store.ledger()) == 1  # asking records nothing


def test_a_ceiling_lowered_while_composing_is_applied_to_the_insert(
    site: SiteDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_module.epsilon_for_history
    calls: list[int] = []

    def lowering(history, *, delta):
        calls.append(len(history))
        if len(calls) == 2:  # the agent composed its history: the operator lowers the ceiling
            other.set_ceiling(0.01, actor="alice")
        return real(history, delta=delta)

    with SiteStore.open(site) as agent, SiteStore.open(site) as other:
        assert agent.check_training("icu", [DpStep(1.1, 0.02, 50)], delta=DELTA).allowed
        monkeypatch.setattr(store_module, "epsilon_for_history", lowering)
        with pytest.raises(TesseraError, match=r"ceiling 0\.010") as info:
            _run(agent)
        assert info.value.code is ErrorCode.BUDGET_EXCEEDED
        assert agent.ledger() == []
    assert calls == [1, 1]
