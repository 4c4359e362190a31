"""Federated evaluation from counts agrees with metrics on the pooled predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

from client_app.agent.envelopes import counts_to_proto
from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.eval_counts import count_held_out, fixed_groups, merge_small_cells
from common.layout import TensorSlot
from common.models import build_model, predict_scores, vector_to_model
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from server.coordinator import run_study
from server.federated_eval import sum_counts
from tessera import local_federation
from tessera.baseline import pooled_splits
from tessera.inprocess import InProcessGrid

PASS = "evaluation test passphrase"


def _without_dp(plan: StudyPlan) -> StudyPlan:
    raw = plan.model_dump()
    raw["privacy"]["dp"] = False
    return StudyPlan.model_validate(raw)


def test_diabetes_final_metrics_and_fairness_match_pooled_predictions(tmp_path: Path) -> None:
    # Exact counting, so without DP (whose noisy histograms are tested on their own).
    plan = _without_dp(override(load_plan(bundled_plan_path("diabetes")), rounds=1))
    fed = local_federation.build(tmp_path / "w", plan, sites=3, ceilings={}, passphrase=PASS)
    grid = InProcessGrid([SiteAgent(unlock_vault(s, PASS)) for s in fed.sites])
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="e",
                       expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    final = result["final"]

    doc = json.loads((fed.coordinator_dir / result["model"]["path"]).read_text())
    model = build_model(plan.model, n_features=len(doc["features"]), seed=plan.seed)
    layout = [TensorSlot(name=s["name"], shape=tuple(s["shape"]), offset=s["offset"],
                         length=s["length"]) for s in doc["layout"]]
    vector_to_model(model, np.asarray(doc["values"]), layout)
    _, test = pooled_splits(fed)
    X = (test.X - np.asarray(doc["mean"])) / np.asarray(doc["std"])
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    y = test.y
    predicted = scores >= 0.5

    assert final["n"] == len(y)
    assert abs(final["auc"] - roc_auc_score(y, scores)) < 0.05  # merged score bins
    assert abs(final["brier"] - brier_score_loss(y, scores)) < 1e-6
    # The opening site shares the summed counts with cells under 10 rows merged: the metrics
    # are those of the pooled predictions counted the same way.
    pooled = count_held_out(scores, y, test.groups, groups=fixed_groups(plan))
    expected = sum_counts([counts_to_proto(merge_small_cells(pooled, min_cell=10))])
    for key in ("accuracy", "f1", "auc", "precision", "recall", "specificity"):
        assert final[key] == pytest.approx(expected[key], abs=1e-12), key
    assert final["fairness"] == expected["fairness"]
    # Merging moves few rows across the 0.5 threshold (only where one side of it holds fewer
    # than 10 rows of a label): the pooled predictions' own rates stay close.
    assert abs(final["accuracy"] - accuracy_score(y, predicted)) < 0.1
    assert abs(final["f1"] - f1_score(y, predicted)) < 0.1


def test_a_model_that_misses_a_kpi_gate_is_registered_not_promotable(tmp_path: Path) -> None:
    from server.registry import ModelRegistry

    base = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    raw = base.model_dump()
    # A gate no noisy model meets (a held-out split can be classified perfectly, so an
    # accuracy gate may be met): a calibration error of at most 1e-9.
    raw["kpis"] = {"min_accuracy": 0.5, "max_ece": 1e-9}
    plan = StudyPlan.model_validate(raw)
    fed = local_federation.build(tmp_path / "w", plan, sites=3, ceilings={}, passphrase=PASS)
    grid = InProcessGrid([SiteAgent(unlock_vault(s, PASS)) for s in fed.sites])
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="k",
                       expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    gates = result["kpi_gates"]
    assert gates["promotable"] is False
    assert len(gates["reasons"]) == 1 and gates["reasons"][0].startswith("max_ece")
    assert gates["checks"]["min_accuracy"]["passed"] is True
    with ModelRegistry.open(fed.coordinator_dir) as registry:
        stored = registry.get(plan.name, result["model"]["version"])
    assert stored.lineage["kpi_gates"]["promotable"] is False
