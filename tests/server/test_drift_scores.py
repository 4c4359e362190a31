"""Score drift across sites, with real site agents (in one process): sites that kept the
study's final model add its noisy score histogram to their drift answer, the coordinator
compares it with the histogram they released for the version the model trained on, and a
shift that moves the scores (not the watched feature) crosses the score threshold alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.governance.drift_sharing import set_drift_sharing
from client_app.store.site_store import SiteStore
from server.coordinator import run_study
from server.drift import SiteDrift, study_drift
from server.drift_collect import DriftCollection
from server.drift_scores import score_drift
from server.model_card import write_card
from server.registry import ModelRegistry
from tessera.cli import app
from tessera.inprocess import InProcessGrid
from tests.drift_federation import PASSPHRASE, build, drift_plan, register_shifted
from tests.drift_federation import DriftFederation as Federation

STUDY = "breast_cancer"
WATCHED = ["mean_texture"]
#: Strongly predictive features the plan does not watch: moving them moves the scores only.
PREDICTIVE = ["worst_radius", "worst_perimeter", "worst_area", "worst_concave_points"]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    plan = drift_plan(scores=True, features=WATCHED, he=False)
    fed = build(tmp_path_factory.mktemp("drift-scores") / "work", plan)
    agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="1", expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    for site in fed.sites:
        with SiteStore.open(site) as store:
            set_drift_sharing(store, True, actor="test-operator")
    state = Federation(fed=fed, baseline=DriftCollection(answers=(), refused={}))
    state.baseline = state.collect()
    return state


def test_sites_holding_the_final_model_send_its_score_histogram(
        federation: Federation) -> None:
    assert federation.baseline.refused == {}
    for answer in federation.baseline.answers:
        assert answer.cells.shape == (1, 10)
        assert answer.scores is not None and answer.scores.shape == (10,)
    for site in federation.fed.sites:
        with SiteStore.open(site) as store:
            entries = [e for e in store.ledger() if e.kind == "drift"]
        assert len(entries) == 1
        assert entries[0].mechanism.to_json() == {"mechanism": "gaussian",
                                                  "noise_multiplier": 2.0, "count": 2}


def test_unchanged_data_shows_no_score_shift(federation: Federation) -> None:
    result = study_drift(federation.fed.coordinator_dir, STUDY, record=False)
    assert result.scores is not None and result.scores.not_compared == {}
    assert result.scores.psi == pytest.approx(0.0, abs=1e-12)  # the same released answers
    assert not result.retraining_recommended


def test_a_score_shift_at_two_sites_crosses_the_score_threshold_alone(
        federation: Federation) -> None:
    fed = federation.fed
    # Scores are bimodal: one site of three moving to "malignant" gives a pooled PSI near
    # 0.2 (each moved site's own PSI is far above 1); two sites cross 0.25 clearly.
    for index in (1, 2):
        register_shifted(fed, index, towards_max=0.5, features=PREDICTIVE)
    again = federation.collect()
    assert again.refused == {} and all(a.scores is not None for a in again.answers)
    result = study_drift(fed.coordinator_dir, STUDY)
    scores = result.scores
    assert scores is not None and scores.psi is not None
    assert scores.crossed and scores.psi > scores.threshold, scores
    assert scores.per_site["site-1"] == pytest.approx(0.0, abs=1e-12)
    for moved in ("site-2", "site-3"):
        assert (scores.per_site[moved] or 0.0) > 1.0
    assert result.worst_psi <= result.threshold  # the watched feature did not move
    assert result.retraining_recommended and result.draft_plan
    with ModelRegistry.open(fed.coordinator_dir) as registry:
        assert registry.retraining_recommended(registry.get(STUDY, 1))
        check = registry.drift_checks(STUDY, 1)[-1]
    assert check.details["scores"]["psi"] == pytest.approx(scores.psi)
    card = (write_card(fed.coordinator_dir, STUDY, 1) / "card.md").read_text()
    assert "RETRAINING RECOMMENDED" in card and "model scores PSI" in card

    runner, kit = CliRunner(), str(fed.coordinator_kit)
    base = ["--kit", kit, "study", "drift", STUDY, "--coordinator-dir",
            str(fed.coordinator_dir), "--no-record"]
    shown = runner.invoke(app, [*base, "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["retraining_recommended"] is True and doc["shifted_features"] == []
    assert doc["scores"]["retraining_recommended"] is True
    assert set(doc["scores"]["per_site"]) == {"site-1", "site-2", "site-3"}
    text = runner.invoke(app, base)
    assert text.exit_code == 0 and "model scores: PSI" in text.output
    assert "RETRAINING RECOMMENDED" in text.output


def _answer(site: str, version: str, scores: np.ndarray | None) -> SiteDrift:
    return SiteDrift(site=site, dataset_version=version, cells=np.ones((1, 4)), at="t",
                     scores=scores)


def test_sites_without_a_reference_or_without_scores_are_not_compared() -> None:
    hist = np.array([5.0, 10.0, 20.0, 5.0])
    answers = [_answer("a", "v1", hist), _answer("b", "v1", None), _answer("c", "v1", hist),
               _answer("c", "v2", hist[::-1].copy())]
    current = {"a": answers[0], "b": answers[1], "c": answers[3]}
    result = score_drift(answers, {"a": "v1", "b": "v1", "c": "v1"}, current,
                         threshold=0.25)
    assert set(result.not_compared) == {"b"}
    assert result.per_site["a"] == pytest.approx(0.0)
    assert result.per_site["c"] is not None and result.per_site["c"] > 0.25
    alone = score_drift([_answer("a", "v2", hist)], {"a": "v1"},
                        {"a": _answer("a", "v2", hist)}, threshold=0.25)
    assert alone.psi is None and not alone.crossed and "trained on" in alone.not_compared["a"]
