"""The privacy-budget view (per dataset, at the site's delta), the ledger report and the
privacy terms a site approves and admits a plan on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault, create_vault
from client_app.governance.budget import (
    budget_overview,
    ceiling,
    check_plan_privacy,
    ledger_report,
    set_ceiling,
)
from client_app.governance.studies import decide, receive_plan
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from client_app.store.tables import DatasetVersionRow
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, bundled_plan_path, load_plan, plan_hash, plan_to_toml
from common.sql import make_engine
from privacy.accounting import epsilon_for_history
from privacy.mechanisms import GaussianRelease

PLAN = "c0ffee" + "0" * 58
BREAST = load_plan(bundled_plan_path("breast_cancer"))


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "h1", name="h1", ceiling=6.0)


@pytest.fixture
def vault(site: SiteDir) -> SiteVault:
    return create_vault(site, "budget test passphrase")


def _register(site: SiteDir, dataset: str, rows: int) -> None:
    engine = make_engine(site.db_url)
    with Session(engine) as session, session.begin():
        session.add(DatasetVersionRow(
            at=datetime.now(UTC), dataset=dataset, version="a" * 64, source_hash="b" * 64,
            source_name="x.csv", source_format="csv", rows=rows, policy="{}", report="{}",
            actor="ops"))
    engine.dispose()


def _record_runs(vault: SiteVault) -> None:
    with SiteStore.open(vault.site, ledger_key=ledger_key(vault)) as store:
        store.set_delta(1e-5, actor="ops")
        for round_, dataset in ((1, "icu"), (2, "icu"), (3, "icu"), (1, "ward")):
            store.record_training(
                plan_hash=PLAN, study="sepsis", run_id="r1", round=round_, dataset_id=dataset,
                dataset_version="v1", noise_multiplier=1.1, sample_rate=0.02, steps=50,
            )
        store.record_release(mechanism=GaussianRelease(5.0, 2), kind="evaluation_counts",
                             plan_hash=PLAN, study="sepsis", run_id="r1", round=3,
                             dataset_id="icu", dataset_version="v1")


def _plan(*, delta: float = 1e-5, dp: bool = True) -> StudyPlan:
    raw = BREAST.model_dump()
    raw["privacy"]["delta"] = delta
    raw["privacy"]["dp"] = dp
    return StudyPlan.model_validate(raw)


def test_overview_has_each_datasets_entries_spend_and_curve(vault: SiteVault) -> None:
    _record_runs(vault)
    icu, ward = budget_overview(vault.site)
    assert (icu.dataset, ward.dataset) == ("icu", "ward")
    assert [e.round for e in icu.entries] == [1, 2, 3, 3] and len(ward.entries) == 1
    assert icu.entries[-1].kind == "evaluation_counts"
    cumulative = [eps for _, eps in icu.curve]
    assert cumulative == [e.epsilon_cumulative for e in icu.entries]
    assert cumulative == sorted(cumulative) and cumulative[0] < cumulative[-1]
    assert [at for at, _ in icu.curve] == [e.at for e in icu.entries]
    assert icu.spent == cumulative[-1]
    assert icu.delta is not None and (icu.delta.value, icu.delta.source) == (1e-5, "explicit")
    assert icu.ceiling == ward.ceiling == 6.0
    assert icu.remaining == pytest.approx(6.0 - icu.spent)
    assert ward.spent == pytest.approx(icu.entries[0].epsilon)  # composed per dataset
    assert json.loads(json.dumps(icu.to_json()))["epsilon"] == icu.spent


def test_spend_is_recomposed_at_the_sites_delta_now(vault: SiteVault) -> None:
    _record_runs(vault)
    with SiteStore.open(vault.site) as store:
        store.set_delta(1e-7, actor="ops")
    icu = budget_overview(vault.site)[0]
    history = [e.mechanism for e in icu.entries]
    assert icu.spent == epsilon_for_history(history, delta=1e-7)
    assert icu.spent > icu.entries[-1].epsilon_cumulative  # lower delta, more epsilon


def test_registered_dataset_without_runs_has_its_whole_budget(site: SiteDir) -> None:
    _register(site, "oncology", 10)
    [oncology] = budget_overview(site)
    assert (oncology.dataset, oncology.entries, oncology.spent) == ("oncology", (), 0.0)
    assert oncology.remaining == 6.0 and oncology.curve == ()
    assert oncology.delta is not None and oncology.delta.value == pytest.approx(0.01)


def test_lowering_the_ceiling_is_allowed_and_remaining_never_goes_negative(
    vault: SiteVault,
) -> None:
    _record_runs(vault)
    icu = budget_overview(vault.site)[0]
    set_ceiling(vault.site, icu.spent / 2, actor="ops")
    lowered = budget_overview(vault.site)[0]
    assert lowered.ceiling == pytest.approx(icu.spent / 2)
    assert lowered.remaining == 0.0 and lowered.fraction_spent == pytest.approx(2.0)


def test_raising_the_ceiling_needs_confirmation(site: SiteDir) -> None:
    with pytest.raises(TesseraError) as caught:
        set_ceiling(site, 8.0, actor="ops")
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert ceiling(site) == 6.0
    set_ceiling(site, 8.0, actor="ops", confirm_raise=True)
    assert ceiling(site) == 8.0
    with SiteStore.open(site) as store:
        changes = [e.details for e in store.events(kind="ceiling_changed")]
    assert changes[-1] == {"old": 6.0, "new": 8.0, "actor": "ops"}


def test_ceiling_refuses_nonsense_values_and_missing_actor(site: SiteDir) -> None:
    for value, actor in ((-1.0, "ops"), (float("nan"), "ops"), (3.0, "")):
        with pytest.raises(TesseraError) as caught:
            set_ceiling(site, value, actor=actor)
        assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert ceiling(site) == 6.0


def test_ledger_report_lists_every_entry_each_datasets_delta_and_integrity(
        vault: SiteVault) -> None:
    _record_runs(vault)
    doc = json.loads(json.dumps(ledger_report(vault.site, vault=vault).to_json()))
    assert (doc["format"], doc["version"], doc["site"]) == ("tessera-privacy-ledger", 1, "h1")
    assert (doc["ceiling"], doc["explicit_delta"], doc["non_private_studies"]) == (
        6.0, 1e-5, False)
    assert doc["integrity"] == {"checked": True, "ok": True, "entries": 5, "first_bad": None,
                                "reason": ""}
    assert [d["dataset"] for d in doc["datasets"]] == ["icu", "ward"]
    assert doc["datasets"][0]["delta"] == 1e-5 and doc["datasets"][0]["entries"] == [1, 2, 3, 5]
    assert {e["mechanism"] for e in doc["entries"]} == {"poisson_subsampled_gaussian",
                                                         "gaussian"}
    only_ward = ledger_report(vault.site, vault=vault, dataset="ward").to_json()
    assert [e["dataset_id"] for e in only_ward["entries"]] == ["ward"]


def test_a_plan_whose_delta_is_above_the_sites_is_refused(site: SiteDir) -> None:
    _register(site, "breast_cancer", 200)  # default delta 1/2000
    with SiteStore.open(site) as store:
        assert check_plan_privacy(store, _plan(delta=1e-5), dataset_rows=None) is not None
        with pytest.raises(TesseraError, match=r"privacy\.delta") as info:
            check_plan_privacy(store, _plan(delta=0.5), dataset_rows=None)
        assert info.value.code is ErrorCode.PERMISSION_DENIED
        assert "1/(10 n) for the 200 rows" in info.value.message
        store.set_delta(1e-6, actor="ops")
        with pytest.raises(TesseraError, match="set by this site's operator"):
            check_plan_privacy(store, _plan(delta=1e-5), dataset_rows=None)


def test_a_non_private_plan_is_refused_unless_the_site_allows_it(site: SiteDir) -> None:
    with SiteStore.open(site) as store:
        with pytest.raises(TesseraError, match="differential privacy off") as info:
            check_plan_privacy(store, _plan(dp=False), dataset_rows=100)
        assert info.value.code is ErrorCode.PERMISSION_DENIED
        store.set_allow_non_private(True, actor="ops", confirm=True)
        assert check_plan_privacy(store, _plan(dp=False), dataset_rows=100) is None


def test_approving_a_received_plan_checks_its_privacy_terms(site: SiteDir) -> None:
    _register(site, "breast_cancer", 200)
    loose = _plan(delta=0.01)
    receive_plan(site, plan_to_toml(loose))
    with pytest.raises(TesseraError, match=r"privacy\.delta") as info:
        decide(site, plan_hash(loose), "approved", actor="ops")
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    decide(site, plan_hash(loose), "rejected", actor="ops")  # refusing needs no check
    fine = _plan(delta=1e-5)
    receive_plan(site, plan_to_toml(fine))
    decide(site, plan_hash(fine), "approved", actor="ops")
    with SiteStore.open(site) as store:
        assert store.is_approved(plan_hash(fine)) and not store.is_approved(plan_hash(loose))
