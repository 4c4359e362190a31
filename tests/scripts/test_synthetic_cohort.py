"""scripts/synthetic_cohort.py draws seeded cohorts from a plan's public data dictionary only:
rows inside the declared ranges, labels of the separation asked for, the same rows per seed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from synthetic_cohort import draw_task, main, sample

from common.plan import bundled_plan_path, declared_feature_ranges, load_plan


@pytest.mark.parametrize("study", ["breast_cancer", "diabetes"])
def test_rows_stay_inside_the_declared_ranges(study: str) -> None:
    plan = load_plan(bundled_plan_path(study))
    ranges = declared_feature_ranges(plan)
    assert ranges is not None
    X, y = sample(draw_task(plan, seed=3, separation=0.9), 2000, seed=1)
    assert X.shape == (2000, len(plan.dataset.features))
    assert np.all(X >= np.asarray(ranges[0])) and np.all(X <= np.asarray(ranges[1]))
    assert set(np.unique(y)) == {0.0, 1.0}


@pytest.mark.parametrize("separation", [0.98, 0.78])
def test_the_true_probabilities_separate_as_asked(separation: float) -> None:
    plan = load_plan(bundled_plan_path("diabetes"))
    task = draw_task(plan, seed=0, separation=separation)
    X, y = sample(task, 20_000, seed=2)
    # A logistic regression on the features cannot beat the Bayes AUC it aims at.
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=2000).fit((X - X.mean(0)) / X.std(0), y)
    auc = roc_auc_score(y, fitted.decision_function((X - X.mean(0)) / X.std(0)))
    assert separation - 0.25 < auc < separation + 0.02


def test_the_same_seeds_give_the_same_rows() -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    first = sample(draw_task(plan, seed=5, separation=0.9), 50, seed=4)
    again = sample(draw_task(plan, seed=5, separation=0.9), 50, seed=4)
    other = sample(draw_task(plan, seed=6, separation=0.9), 50, seed=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_the_csv_has_the_plan_schema(tmp_path: Path) -> None:
    out = tmp_path / "site.csv"
    assert main(["--study", "diabetes", "--out", str(out), "--rows", "20"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    plan = load_plan(bundled_plan_path("diabetes"))
    assert lines[0].split(",") == ["patient_id", *plan.dataset.features, plan.dataset.label,
                                   "sex"]
    assert len(lines) == 21
