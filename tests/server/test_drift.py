"""Drift across sites at the coordinator, with real site agents (in one process): sites
answer drift requests with noisy histograms in their ledgers, the coordinator combines them
into PSI per feature, and a shift at one site crosses the plan's threshold, marks the model
"retraining recommended" and drafts the next plan version."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.governance.drift_sharing import set_drift_sharing
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import load_plan, plan_hash
from common.workdir import CoordinatorDir
from server.coordinator import run_study
from server.drift import SiteDrift, combine, reference_of, reference_shares, study_drift
from server.drift_collect import DriftCollection
from server.registry import ModelRegistry
from tessera.cli import app
from tessera.inprocess import InProcessGrid
from tests.drift_federation import PASSPHRASE, WATCHED, build, drift_plan, register_shifted
from tests.drift_federation import DriftFederation as Federation

STUDY = "breast_cancer"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    fed = build(tmp_path_factory.mktemp("drift") / "work", drift_plan())
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


def test_every_site_answers_for_the_version_it_trained_on(federation: Federation) -> None:
    assert federation.baseline.refused == {}
    assert sorted(a.site for a in federation.baseline.answers) == ["site-1", "site-2",
                                                                  "site-3"]
    with ModelRegistry.open(federation.fed.coordinator_dir) as registry:
        trained_on = registry.get(STUDY, 1).lineage["dataset_versions"]
    assert {a.site: a.dataset_version for a in federation.baseline.answers} == trained_on
    for answer in federation.baseline.answers:
        assert answer.cells.shape == (len(WATCHED), 10)


def test_unchanged_data_is_within_threshold(federation: Federation) -> None:
    result = study_drift(federation.fed.coordinator_dir, STUDY, record=False)
    assert result.reference.startswith("the sites' drift answers")
    assert result.worst_psi == pytest.approx(0.0, abs=1e-12)  # the same released answers
    assert not result.retraining_recommended and result.check is None


def test_a_shift_at_one_site_crosses_the_threshold_and_drafts_the_next_plan(
        federation: Federation) -> None:
    fed = federation.fed
    register_shifted(fed, 1, towards_max=0.4)
    again = federation.collect()
    assert again.refused == {} and len(again.answers) == 3
    for i, site in enumerate(fed.sites):  # only the site with a new version spent again
        with SiteStore.open(site) as store:
            drift_entries = [e for e in store.ledger() if e.kind == "drift"]
        assert len(drift_entries) == (2 if i == 1 else 1), site.name
    result = study_drift(fed.coordinator_dir, STUDY)
    assert result.retraining_recommended and result.worst_psi > fed.plan.drift.psi_threshold
    for feature in result.features:  # the other sites' answers did not move
        assert feature.per_site["site-1"] == pytest.approx(0.0, abs=1e-12)
        assert feature.per_site["site-3"] == pytest.approx(0.0, abs=1e-12)
        assert feature.per_site["site-2"] > 1.0
    with ModelRegistry.open(fed.coordinator_dir) as registry:
        model = registry.get(STUDY, 1)
        assert registry.retraining_recommended(model)
        check = registry.drift_checks(STUDY, 1)[-1]
    assert check.draft_plan == result.draft_plan and check.details["reference"] == "measured"
    draft = load_plan(fed.coordinator_dir / result.draft_plan)
    assert draft.study.name == STUDY and draft.study.version == 2
    assert plan_hash(draft) != fed.plan_hash and "retraining" in draft.study.description
    assert draft.model_dump(exclude={"study"}) == fed.plan.model_dump(exclude={"study"})

    runner, kit = CliRunner(), str(fed.coordinator_kit)
    listed = runner.invoke(app, ["--kit", kit, "model", "list", "--coordinator-dir",
                                 str(fed.coordinator_dir)])
    assert listed.exit_code == 0 and "RETRAINING RECOMMENDED" in listed.output
    shown = runner.invoke(app, ["--kit", kit, "study", "drift", STUDY, "--coordinator-dir",
                                str(fed.coordinator_dir), "--json", "--no-record"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["retraining_recommended"] is True and set(doc["sites"]) == {
        "site-1", "site-2", "site-3"}


def test_study_drift_on_an_unknown_study_fails_clearly(federation: Federation) -> None:
    result = CliRunner().invoke(app, ["--kit", str(federation.fed.coordinator_kit), "study",
                                      "drift", "no_such_study", "--coordinator-dir",
                                      str(federation.fed.coordinator_dir)])
    assert result.exit_code != 0 and "no_such_study" in result.output


def test_without_answers_for_the_trained_versions_the_reference_is_normal() -> None:
    from privacy.dp_drift import DriftBins

    bins = DriftBins.of([0.0], [10.0], bins=10)
    normal = reference_shares(np.array([5.0]), np.array([1.5]), bins)
    assert normal.sum() == pytest.approx(1.0) and normal[0, 4] == normal[0, 5]
    rng = np.random.default_rng(0)
    cells = np.histogram(np.clip(rng.normal(5.0, 1.5, 5000), 0, 9.999), bins=10,
                         range=(0, 10))[0][None, :].astype(float)
    current = {"a": SiteDrift(site="a", dataset_version="v2", cells=cells, at="t")}
    reference = reference_of(list(current.values()), {"a": "v1"}, normal, current)
    assert reference.kind == "normal"
    same = combine(("x",), current, reference)[0]
    assert same.psi < 0.02  # data that is the reference's normal: no drift
    moved = {"a": SiteDrift(site="a", dataset_version="v2", cells=np.roll(cells, 3, axis=1),
                            at="t")}
    assert combine(("x",), moved, reference)[0].psi > 1.0


def test_a_plan_without_drift_cannot_be_combined() -> None:
    from privacy.dp_drift import watched_features

    with pytest.raises(TesseraError) as err:
        watched_features(drift_plan(drift=False))
    assert err.value.code == ErrorCode.PLAN_INVALID


def test_a_drift_run_of_the_server_app_collects_every_sites_answer(
        federation: Federation) -> None:
    from flwr.app import Context, RecordDict

    from server import server_app
    from server.drift_collect import collection_path

    fed = federation.fed

    def drift_entries() -> int:
        total = 0
        for site in fed.sites:
            with SiteStore.open(site) as store:
                total += sum(1 for e in store.ledger() if e.kind == "drift")
        return total

    before = drift_entries()
    agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites]
    context = Context(run_id=4242, node_id=0, node_config={}, state=RecordDict(), run_config={
        "coordinator-dir": str(fed.coordinator_dir), "plan": str(fed.plan_path),
        "expected-sites": 3, "round-timeout": 60.0, "task": "drift"})
    server_app.main(InProcessGrid(agents), context)
    outcome = json.loads(collection_path(fed.coordinator_dir, "4242").read_text())
    assert outcome["status"] == "completed" and outcome["refused"] == {}
    assert sorted(outcome["answered"]) == ["site-1", "site-2", "site-3"]
    assert drift_entries() == before  # every site repeated its answer for its version
    assert not CoordinatorDir(fed.coordinator_dir).run("4242").root.exists()  # no study run
    again = study_drift(fed.coordinator_dir, STUDY, record=False)  # outcomes are not answers
    assert sorted(again.sites) == ["site-1", "site-2", "site-3"]


def test_collecting_needs_a_running_coordinator(federation: Federation) -> None:
    result = CliRunner().invoke(app, ["--kit", str(federation.fed.coordinator_kit), "study",
                                      "drift", STUDY, "--collect", "--coordinator-dir",
                                      str(federation.fed.coordinator_dir)])
    assert result.exit_code != 0 and "coordinator is not running" in result.output
