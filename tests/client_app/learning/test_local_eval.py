"""Local evaluation: the site keeps the final global model and scores it on its own rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score, roc_curve

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import SiteVault, open_or_create_vault, unlock_vault
from client_app.governance.consent import history, withdraw
from client_app.learning.local_eval import (
    evaluate_model,
    exact_auc,
    group_confusion,
    model_name,
    roc_points,
    stored_models,
)
from client_app.store.folder import init_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.layout import TensorSlot
from common.models import build_model, predict_scores, vector_to_model
from common.plan import bundled_plan_path, load_plan, override
from server.coordinator import run_study
from tessera import local_federation
from tessera.inprocess import InProcessGrid
from tests.conftest import TEST_PASSPHRASE

PASS = "local evaluation passphrase"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """An encrypted one-round study on two in-process sites."""
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    fed = local_federation.build(tmp_path_factory.mktemp("eval") / "w", plan, sites=2,
                                 ceilings={}, passphrase=PASS)
    agents = [SiteAgent(unlock_vault(s, PASS)) for s in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="l", expected_sites=2, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    return fed, result


@pytest.mark.slow
def test_each_site_keeps_the_final_global_model_the_coordinator_released(study) -> None:
    fed, result = study
    released = json.loads((fed.coordinator_dir / result["model"]["path"]).read_text())
    for site in fed.sites:
        vault = unlock_vault(site, PASS)
        (kept,) = stored_models(vault)
        assert kept.name == model_name(fed.plan, fed.plan_hash) == \
            f"breast_cancer-{fed.plan_hash[:12]}"
        assert (kept.study, kept.plan_hash, kept.round) == ("breast_cancer", fed.plan_hash, 1)
        doc = json.loads(vault.read_model(kept.name))
        # The release is noise-flooded (privacy/flooding.py) and rounded to the plan's 6
        # decimals; the kept model is what the site decrypted. A small standard deviation
        # magnifies the flooding of the sums it comes from, a wide range the mean's.
        assert np.allclose(doc["values"], released["values"], rtol=0, atol=1e-5)
        assert np.allclose(doc["mean"], released["mean"], rtol=1e-6, atol=5e-5)
        assert np.allclose(doc["std"], released["std"], rtol=1e-6, atol=5e-5)
        with SiteStore.open(site) as store:
            (event,) = store.events(kind="global_model_stored")
        assert event.plan_hash == fed.plan_hash and event.details["model"] == kept.name
    assert not list((fed.sites[0].root / "models").glob("*.json"))  # only encrypted files


@pytest.mark.slow
def test_local_metrics_agree_with_sklearn_on_the_held_out_rows_minus_withdrawn(study) -> None:
    fed, _ = study
    vault = unlock_vault(fed.sites[0], PASS)
    _, test_rows = fed.site_split(0)  # the site's own keyed split
    withdraw(vault, [str(fed.data.patient_ids[test_rows[0]])], actor="op", scope="breast_cancer")
    excluded = {e.patient_id for e in history(vault)}
    kept = [r for r in test_rows if str(fed.data.patient_ids[r]) not in excluded]
    assert len(kept) == len(test_rows) - 1

    fractions: list[float] = []
    result = evaluate_model(vault, progress=fractions.append)

    doc = json.loads(vault.read_model(result.model))
    model = build_model(fed.plan.model, n_features=len(doc["features"]), seed=fed.plan.seed)
    vector_to_model(model, np.asarray(doc["values"]), [
        TensorSlot(s["name"], tuple(s["shape"]), s["offset"], s["length"])
        for s in doc["layout"]])
    X = (fed.data.X[kept] - np.asarray(doc["mean"])) / np.asarray(doc["std"])
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    y = fed.data.y[kept]
    assert result.n == len(kept)
    assert result.excluded_by_consent == len(excluded)  # the demo's two and this one
    assert result.accuracy == accuracy_score(y, scores >= 0.5)
    assert abs(result.auc - roc_auc_score(y, scores)) < 1e-12
    tn, fp, fn, tp = confusion_matrix(y, scores >= 0.5).ravel()
    assert (result.tp, result.fp, result.tn, result.fn) == (tp, fp, tn, fn)
    assert result.roc_fpr[0] == 0.0 and result.roc_tpr[-1] == 1.0
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    with SiteStore.open(fed.sites[0]) as store:
        event = store.events(kind="local_evaluation")[-1]
    assert event.details["n"] == len(kept) and event.details["auc"] == result.auc
    assert not any(str(p) in json.dumps(event.details) for p in excluded)


@pytest.mark.slow
def test_cancelling_stops_the_evaluation_and_records_nothing(study) -> None:
    fed, _ = study
    vault = unlock_vault(fed.sites[1], PASS)
    calls: list[float] = []
    with pytest.raises(TesseraError) as err:
        evaluate_model(vault, progress=calls.append, cancelled=lambda: len(calls) >= 2)
    assert err.value.code is ErrorCode.CANCELLED
    assert len(calls) == 2
    with SiteStore.open(fed.sites[1]) as store:
        assert store.events(kind="local_evaluation") == []


@pytest.mark.slow
def test_unknown_or_missing_model_is_not_found(study, tmp_path: Path) -> None:
    fed, _ = study
    with pytest.raises(TesseraError) as err:
        evaluate_model(unlock_vault(fed.sites[1], PASS), model="no-such-model")
    assert err.value.code is ErrorCode.NOT_FOUND and "no-such-model" in err.value.message
    empty: SiteVault = open_or_create_vault(init_site_dir(tmp_path / "s", name="s"),
                                            TEST_PASSPHRASE)
    assert stored_models(empty) == []
    with pytest.raises(TesseraError) as err:
        evaluate_model(empty)
    assert err.value.code is ErrorCode.NOT_FOUND


def test_exact_auc_and_roc_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(200), 1)  # many ties
    y = (rng.random(200) < scores).astype(np.int64)
    assert abs(exact_auc(scores, y) - roc_auc_score(y, scores)) < 1e-12
    fpr, tpr = roc_points(scores, y)
    ref_fpr, ref_tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)
    assert np.isnan(exact_auc(scores, np.ones(200, dtype=np.int64)))
    assert roc_points(scores, np.zeros(200, dtype=np.int64))[0].size == 0


def test_group_confusion_counts_each_group_of_the_sensitive_column() -> None:
    predicted = np.array([True, True, False, False, True, False])
    y = np.array([1, 0, 1, 0, 1, 1])
    groups = np.array(["b", "a", "a", "b", "b", "a"])
    assert group_confusion(predicted, y, groups) == (("a", (0, 1, 0, 2)), ("b", (2, 0, 1, 0)))
    assert group_confusion(predicted, y, None) == ()


@pytest.mark.slow
def test_every_release_of_the_study_records_its_size_on_the_wire(study) -> None:
    fed, _ = study
    with SiteStore.open(fed.sites[0]) as store:
        events = [e for e in store.events() if e.plan_hash == fed.plan_hash]
    sizes = {e.kind: e.details.get("bytes") for e in events
             if e.kind in ("stats_sent", "update_sent", "counts_sent", "model_released")}
    assert set(sizes) == {"stats_sent", "update_sent", "counts_sent", "model_released"}
    assert all(isinstance(size, int) and size > 0 for size in sizes.values()), sizes
    assert sizes["update_sent"] > 10_000  # CKKS ciphertexts of the whole model
