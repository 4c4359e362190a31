"""The privacy ledger: every release a mechanism, composed per dataset at the site's delta,
refused past the ceiling, recorded only under the ledger key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import client_app.store.ledger as ledger_module
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import LedgerKey, SiteStore
from common.errors import ErrorCode, TesseraError
from privacy.accounting import epsilon_for_history
from privacy.mechanisms import DpStep, GaussianRelease

PLAN_A = "a" * 64
PLAN_B = "b" * 64
DELTA = 1e-5
KEY = LedgerKey(b"k" * 32)
STEP = DpStep(1.1, 0.02, 50)


def _run(store: SiteStore, *, plan: str = PLAN_A, dataset: str = "icu", round_: int = 1,
         noise: float = 1.1, rate: float = 0.02, steps: int = 50):
    return store.record_training(
        plan_hash=plan, study="sepsis", run_id="r1", round=round_, dataset_id=dataset,
        dataset_version="v1", noise_multiplier=noise, sample_rate=rate, steps=steps,
    )


def _release(store: SiteStore, mechanism, *, kind: str = "statistics", dataset: str = "icu",
             round_: int = 0):
    return store.record_release(
        mechanism=mechanism, kind=kind, plan_hash=PLAN_A, study="sepsis", run_id="r1",
        round=round_, dataset_id=dataset, dataset_version="v1")


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    site = init_site_dir(tmp_path / "sites" / "h1", name="h1")
    with SiteStore.open(site) as store:
        store.set_delta(DELTA, actor="alice")
    return site


@pytest.fixture
def store(site: SiteDir):
    with SiteStore.open(site, ledger_key=KEY) as opened:
        yield opened


def test_cumulative_epsilon_composes_every_release_across_rounds_and_plans(
        store: SiteStore) -> None:
    entries = [
        _run(store, plan=PLAN_A, round_=1),
        _release(store, GaussianRelease(4.0, 2)),
        _run(store, plan=PLAN_A, round_=2),
        _run(store, plan=PLAN_B, round_=1, noise=0.9, rate=0.05, steps=20),
    ]
    cumulative = [e.epsilon_cumulative for e in entries]
    assert cumulative == sorted(cumulative) and cumulative[0] < cumulative[-1]
    whole = [STEP, GaussianRelease(4.0, 2), STEP, DpStep(0.9, 0.05, 20)]
    assert cumulative[-1] == epsilon_for_history(whole, delta=DELTA)
    assert entries[1].epsilon == epsilon_for_history([GaussianRelease(4.0, 2)], delta=DELTA)
    assert store.history("icu") == whole
    assert [e.kind for e in entries] == ["dp_sgd", "statistics", "dp_sgd", "dp_sgd"]
    assert all(e.delta == DELTA for e in entries)


def test_every_release_is_accounted_at_the_sites_delta(store: SiteStore) -> None:
    first = _run(store)
    store.set_delta(1e-7, actor="alice")
    second = _run(store, round_=2)
    assert (first.delta, second.delta) == (DELTA, 1e-7)
    assert second.epsilon_cumulative == epsilon_for_history([STEP, STEP], delta=1e-7)
    assert store.check_release("icu", []).delta == 1e-7
    assert store.projected_epsilon("icu", []) == second.epsilon_cumulative


def test_separate_datasets_have_independent_budgets(store: SiteStore) -> None:
    _run(store, dataset="icu")
    _run(store, dataset="icu", round_=2)
    other = _run(store, dataset="ward", round_=1)
    assert other.epsilon_cumulative == other.epsilon
    assert [e.dataset_id for e in store.ledger(dataset_id="ward")] == ["ward"]
    assert len(store.history("icu")) == 2
    assert store.history("unknown") == []


def test_projected_epsilon_composes_history_with_the_next_releases(store: SiteStore) -> None:
    _run(store)
    extra = [STEP, GaussianRelease(6.0)]
    projected = store.projected_epsilon("icu", extra)
    assert projected == epsilon_for_history([STEP, *extra], delta=DELTA)
    assert store.projected_epsilon("ward", []) == 0.0
    assert _run(store, round_=2).epsilon_cumulative < projected


def test_invalid_releases_are_refused_and_not_recorded(store: SiteStore) -> None:
    with pytest.raises(TesseraError, match="steps"):
        _run(store, steps=0)
    with pytest.raises(TesseraError, match="round"):
        _run(store, round_=-1)
    with pytest.raises(TesseraError, match="kind"):
        _release(store, GaussianRelease(4.0), kind="gossip")
    with pytest.raises(TesseraError, match="mechanism"):
        _release(store, {"mechanism": "gaussian", "noise_multiplier": 4.0, "count": 1})
    with pytest.raises(TesseraError, match="run_id"):
        store.record_release(mechanism=STEP, kind="dp_sgd", plan_hash=PLAN_A, study="s",
                             run_id="", round=1, dataset_id="icu", dataset_version="v1")
    assert store.ledger() == []


def test_ledger_record_serialises_mechanism_and_parameters(store: SiteStore) -> None:
    data = _run(store).to_json()
    assert data["mechanism"] == "poisson_subsampled_gaussian"
    assert data["parameters"] == {"noise_multiplier": 1.1, "sample_rate": 0.02, "steps": 50}
    for key in ("kind", "delta", "epsilon", "epsilon_cumulative", "plan_hash", "study",
                "run_id", "round", "dataset_id", "dataset_version", "at", "mac"):
        assert key in data
    assert isinstance(data["at"], str) and data["at"].endswith("+00:00")
    gaussian = _release(store, GaussianRelease(3.5, 4), kind="evaluation_counts").to_json()
    assert (gaussian["mechanism"], gaussian["parameters"]) == (
        "gaussian", {"noise_multiplier": 3.5, "count": 4})


def test_a_store_without_the_ledger_key_reads_but_never_records(site: SiteDir,
                                                               store: SiteStore) -> None:
    _run(store)
    with SiteStore.open(site) as keyless:
        assert len(keyless.ledger()) == 1
        assert keyless.check_release("icu", [STEP]).allowed
        with pytest.raises(TesseraError) as info:
            _run(keyless, round_=2)
        assert info.value.code is ErrorCode.KEY_MISSING
        with pytest.raises(TesseraError):
            keyless.verify_ledger()
    assert len(store.ledger()) == 1


def test_a_store_with_another_key_refuses_to_record(site: SiteDir, store: SiteStore) -> None:
    _run(store)
    with SiteStore.open(site, ledger_key=LedgerKey(b"x" * 32)) as other:
        assert not other.verify_ledger().ok
        with pytest.raises(TesseraError, match="integrity") as info:
            _run(other, round_=2)
        assert info.value.code is ErrorCode.DATA_INVALID
    assert store.verify_ledger().ok and len(store.ledger()) == 1


def test_ledger_refuses_a_release_past_the_ceiling_and_stores_nothing(store: SiteStore) -> None:
    first = _run(store)
    projected = epsilon_for_history([STEP] * 2, delta=DELTA)
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
    assert store.verify_ledger().ok


def test_a_statistics_release_is_refused_past_the_ceiling_too(store: SiteStore) -> None:
    _run(store)
    store.set_ceiling(store.projected_epsilon("icu", []) * 1.01, actor="alice")
    with pytest.raises(TesseraError, match="ceiling") as info:
        _release(store, GaussianRelease(1.0, 10))
    assert info.value.code is ErrorCode.BUDGET_EXCEEDED
    assert len(store.ledger()) == 1


def test_a_release_reaching_the_ceiling_exactly_is_allowed(store: SiteStore) -> None:
    store.set_ceiling(store.projected_epsilon("icu", [STEP]), actor="alice")
    entry = _run(store)
    assert entry.epsilon_cumulative == store.ceiling()
    with pytest.raises(TesseraError, match="ceiling"):
        _run(store, round_=2)


def test_check_release_answers_before_any_release(store: SiteStore) -> None:
    _run(store)
    check = store.check_release("icu", [STEP])
    assert (check.dataset_id, check.delta) == ("icu", DELTA)
    assert check.projected == store.projected_epsilon("icu", [STEP])
    assert check.ceiling == store.ceiling() and check.allowed
    store.set_ceiling(check.projected / 2, actor="alice")
    refused = store.check_release("icu", [STEP])
    assert not refused.allowed
    assert refused.refusal().code is ErrorCode.BUDGET_EXCEEDED
    assert len(store.ledger()) == 1  # asking records nothing


def test_concurrent_writers_keep_cumulative_epsilon_and_the_chain_consistent(
        site: SiteDir) -> None:
    errors: list[BaseException] = []

    def write(plan: str) -> None:
        try:
            with SiteStore.open(site, ledger_key=KEY) as own:
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
    with SiteStore.open(site, ledger_key=KEY) as store:
        entries = store.ledger(dataset_id="icu")
        assert store.verify_ledger().ok
    assert len(entries) == 12
    for n, entry in enumerate(entries, start=1):
        prefix = [e.mechanism for e in entries[:n]]
        assert entry.epsilon_cumulative == epsilon_for_history(prefix, delta=DELTA)


def test_a_release_recorded_meanwhile_is_composed_into_the_cumulative(
    site: SiteDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger_module.epsilon_for_history
    calls: list[int] = []

    def racing(history, *, delta):
        calls.append(len(history))
        if len(calls) == 2:  # the agent composed its history: another process writes now
            monkeypatch.setattr(ledger_module, "epsilon_for_history", real)
            _run(other, plan=PLAN_B)
        return real(history, delta=delta)

    with SiteStore.open(site, ledger_key=KEY) as agent, \
            SiteStore.open(site, ledger_key=KEY) as other:
        monkeypatch.setattr(ledger_module, "epsilon_for_history", racing)
        entry = _run(agent)
        assert [e.plan_hash for e in agent.ledger()] == [PLAN_B, PLAN_A]
        assert agent.verify_ledger().ok
    assert calls == [1, 1]
    assert entry.epsilon_cumulative == epsilon_for_history([STEP, STEP], delta=DELTA)


def test_a_ceiling_lowered_while_composing_is_applied_to_the_insert(
    site: SiteDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger_module.epsilon_for_history
    calls: list[int] = []

    def lowering(history, *, delta):
        calls.append(len(history))
        if len(calls) == 2:  # the agent composed its history: the operator lowers the ceiling
            other.set_ceiling(0.01, actor="alice")
        return real(history, delta=delta)

    with SiteStore.open(site, ledger_key=KEY) as agent, SiteStore.open(site) as other:
        assert agent.check_release("icu", [STEP]).allowed
        monkeypatch.setattr(ledger_module, "epsilon_for_history", lowering)
        with pytest.raises(TesseraError, match=r"ceiling 0\.010") as info:
            _run(agent)
        assert info.value.code is ErrorCode.BUDGET_EXCEEDED
        assert agent.ledger() == []
    assert calls == [1, 1]


def test_a_delta_lowered_while_composing_is_composed_again(
    site: SiteDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger_module.epsilon_for_history
    calls: list[float] = []

    def lowering(history, *, delta):
        calls.append(delta)
        if len(calls) == 2:
            other.set_delta(1e-8, actor="alice")
        return real(history, delta=delta)

    with SiteStore.open(site, ledger_key=KEY) as agent, SiteStore.open(site) as other:
        monkeypatch.setattr(ledger_module, "epsilon_for_history", lowering)
        entry = _run(agent)
    assert calls == [DELTA, DELTA, 1e-8, 1e-8]
    assert entry.delta == 1e-8
    assert entry.epsilon_cumulative == real([STEP], delta=1e-8)
