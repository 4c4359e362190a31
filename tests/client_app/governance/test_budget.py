"""The privacy-budget view: per-dataset ledger, spend, curve and the ceiling's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from client_app.governance.budget import budget_overview, ceiling, set_ceiling
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from client_app.store.tables import DatasetVersionRow
from common.errors import ErrorCode, TesseraError
from common.sql import make_engine

PLAN = "c0ffee" + "0" * 58


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "h1", name="h1", ceiling=6.0)


def _record_runs(site: SiteDir) -> None:
    with SiteStore.open(site) as store:
        for round_, dataset in ((1, "icu"), (2, "icu"), (3, "icu"), (1, "ward")):
            store.record_training(
                plan_hash=PLAN, study="sepsis", round=round_, dataset_id=dataset,
                dataset_version="v1", noise_multiplier=1.1, sample_rate=0.02, steps=50,
                delta=1e-5,
            )


def test_overview_has_each_datasets_entries_spend_and_curve(site: SiteDir) -> None:
    _record_runs(site)
    icu, ward = budget_overview(site)
    assert (icu.dataset, ward.dataset) == ("icu", "ward")
    assert [e.round for e in icu.entries] == [1, 2, 3] and len(ward.entries) == 1
    cumulative = [eps for _, eps in icu.curve]
    assert cumulative == [e.epsilon_cumulative for e in icu.entries]
    assert cumulative == sorted(cumulative) and cumulative[0] < cumulative[-1]
    assert [at for at, _ in icu.curve] == [e.at for e in icu.entries]
    assert icu.spent == cumulative[-1]
    assert icu.ceiling == ward.ceiling == 6.0
    assert icu.remaining == pytest.approx(6.0 - icu.spent)
    assert ward.spent == pytest.approx(icu.entries[0].epsilon)  # composed per dataset
    assert json.loads(json.dumps(icu.to_json()))["spent"] == icu.spent


def test_registered_dataset_without_runs_has_its_whole_budget(site: SiteDir) -> None:
    engine = make_engine(site.db_url)
    with Session(engine) as session, session.begin():
        session.add(DatasetVersionRow(
            at=datetime.now(UTC), dataset="oncology", version="a" * 64, source_hash="b" * 64,
            source_name="onc.csv", source_format="csv", rows=10, policy="{}", report="{}",
            actor="ops"))
    engine.dispose()
    [oncology] = budget_overview(site)
    assert (oncology.dataset, oncology.entries, oncology.spent) == ("oncology", (), 0.0)
    assert oncology.remaining == 6.0 and oncology.curve == ()


def test_lowering_the_ceiling_is_allowed_and_remaining_never_goes_negative(
    site: SiteDir,
) -> None:
    _record_runs(site)
    icu = budget_overview(site)[0]
    set_ceiling(site, icu.spent / 2, actor="ops")
    lowered = budget_overview(site)[0]
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
