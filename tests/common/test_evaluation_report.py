"""Behaviour of group fairness and of the summarised evaluation report from summed
histograms, checked on raw rows (pooled sites, downsampled curves, undefined values)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import TesseraError
from common.evaluation import (
    MAX_CURVE_POINTS,
    FairnessResult,
    group_fairness,
    summarise,
)
from common.metrics import (
    binary_metrics_from_histograms,
    score_histograms,
)
from tests.common.evaluation_reference import BINS
from tests.common.evaluation_reference import direct_ece as _direct_ece
from tests.common.evaluation_reference import direct_fairness as _direct_fairness
from tests.common.evaluation_reference import group_histograms as _group_histograms
from tests.common.evaluation_reference import random_predictions as _random_predictions


@pytest.fixture(scope="module")
def diabetes_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels (progression above the median) and sex groups of a held-out split."""
    X, target = load_diabetes(return_X_y=True, scaled=False)
    y = (target > np.median(target)).astype(int)
    sex = np.where(X[:, 1] == 1.0, "sex_1", "sex_2")
    X_train, X_test, y_train, y_test, _, sex_test = train_test_split(
        X, y, sex, test_size=0.5, random_state=0, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    return model.predict_proba(X_test)[:, 1], y_test, sex_test


# ---------------------------------------------------------------- fairness


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.7])
def test_group_fairness_matches_direct_computation_on_diabetes_by_sex(
    diabetes_predictions: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float
) -> None:
    scores, labels, sex = diabetes_predictions
    result = group_fairness(_group_histograms(scores, labels, sex), threshold=threshold)
    assert isinstance(result, FairnessResult)
    expected = _direct_fairness(scores, labels, sex, threshold)
    for key, value in expected.items():
        assert getattr(result, key) == pytest.approx(value, abs=1e-12), key
    for g in ("sex_1", "sex_2"):
        rows = sex == g
        predicted = scores[rows] >= threshold
        rates = result.groups[g]
        assert rates.n == rows.sum()
        assert rates.selection_rate == pytest.approx(predicted.mean())
        assert rates.tpr == pytest.approx(predicted[labels[rows] == 1].mean())
        assert rates.fpr == pytest.approx(predicted[labels[rows] == 0].mean())
    assert result.demographic_parity_difference > 0


def test_group_fairness_dictionary_has_the_report_shape(
    diabetes_predictions: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    scores, labels, sex = diabetes_predictions
    report = group_fairness(_group_histograms(scores, labels, sex)).as_dict()
    assert set(report) == {
        "threshold",
        "groups",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
    }
    assert set(report["groups"]) == {"sex_1", "sex_2"}
    assert set(report["groups"]["sex_1"]) == {"n", "selection_rate", "tpr", "fpr"}
    json.dumps(report, allow_nan=False)


def test_group_without_positives_reports_no_tpr_and_is_left_out_of_tpr_range() -> None:
    groups = {
        "a": (np.array([0, 2, 2, 0]), np.array([3, 1, 0, 0])),  # sel 2/8, tpr 0.5, fpr 0
        "b": (np.array([0, 0, 1, 3]), np.array([1, 1, 2, 0])),  # sel 6/8, tpr 1.0, fpr 0.5
        "c": (np.array([0, 0, 0, 0]), np.array([2, 0, 1, 1])),  # sel 2/4, no tpr, fpr 0.5
    }
    result = group_fairness(groups, threshold=0.5)
    assert math.isnan(result.groups["c"].tpr)
    assert result.as_dict()["groups"]["c"]["tpr"] is None
    assert result.groups["c"].fpr == pytest.approx(0.5)
    # c's missing TPR is ignored (read as 0 it would make the TPR range 1.0)
    assert result.equalized_odds_difference == pytest.approx(0.5)
    assert result.demographic_parity_difference == pytest.approx(6 / 8 - 2 / 8)
    assert result.demographic_parity_ratio == pytest.approx((2 / 8) / (6 / 8))


def test_disparities_need_two_groups_with_the_rate_defined() -> None:
    only_negatives = {
        "a": (np.zeros(4, dtype=int), np.array([1, 0, 1, 0])),
        "b": (np.zeros(4, dtype=int), np.array([0, 0, 0, 2])),
    }
    result = group_fairness(only_negatives)
    assert result.equalized_odds_difference == pytest.approx(0.5)  # fpr 0.5 vs 1.0, no tpr
    single = group_fairness({"a": (np.array([0, 1]), np.array([1, 0]))})
    assert math.isnan(single.demographic_parity_difference)
    assert math.isnan(single.equalized_odds_difference)
    assert single.as_dict()["demographic_parity_ratio"] is None
    empty_group = group_fairness(
        {"a": (np.array([0, 1]), np.array([1, 0])), "b": (np.zeros(2), np.zeros(2))}
    )
    assert empty_group.groups["b"].n == 0
    assert math.isnan(empty_group.demographic_parity_difference)


def test_demographic_parity_ratio_is_one_when_no_group_is_selected() -> None:
    groups = {"a": (np.array([1, 0]), np.array([1, 0])), "b": (np.array([2, 0]), np.array([0, 0]))}
    result = group_fairness(groups, threshold=0.5)
    assert result.demographic_parity_difference == 0.0
    assert result.demographic_parity_ratio == 1.0


@pytest.mark.parametrize(
    ("groups", "threshold", "message"),
    [
        ({}, 0.5, "groups"),
        ({"": (np.ones(2), np.ones(2))}, 0.5, "groups"),
        ({"a": (np.ones(2), np.ones(2)), "b": (np.ones(3), np.ones(3))}, 0.5, "groups"),
        ({"a": np.ones(2)}, 0.5, "groups\\['a'\\]"),
        ({"a": (np.ones(2), -np.ones(2))}, 0.5, "groups\\['a'\\]"),
        ({"a": (np.ones(4), np.ones(4))}, 0.3, "threshold"),
        ({"a": (np.ones(4), np.ones(4))}, 1.25, "threshold"),
    ],
)
def test_group_fairness_rejects_bad_input(groups: dict, threshold: float, message: str) -> None:
    with pytest.raises(TesseraError, match=f"^config_invalid: {message}"):
        group_fairness(groups, threshold=threshold)


# ---------------------------------------------------------------- report


def _sums(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    return {
        "log_loss_sum": float(
            -np.sum(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
        ),
        "brier_sum": float(np.sum((scores - labels) ** 2)),
    }


def test_summarise_of_summed_site_counts_equals_pooled_raw_metrics(
    diabetes_predictions: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    scores, labels, sex = diabetes_predictions
    halves = [slice(0, len(scores) // 2), slice(len(scores) // 2, None)]
    total_pos, total_neg = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    groups = {g: (np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)) for g in np.unique(sex)}
    log_loss_sum = brier_sum = 0.0
    for site in halves:  # two sites, each sending only counts and sums
        s, y, g = scores[site], labels[site], sex[site]
        pos, neg = score_histograms(s, y)
        total_pos += pos
        total_neg += neg
        for name, (gp, gn) in _group_histograms(s, y, g).items():
            groups[name][0][:] += gp
            groups[name][1][:] += gn
        sums = _sums(s, y)
        log_loss_sum += sums["log_loss_sum"]
        brier_sum += sums["brier_sum"]
    report = summarise(
        total_pos,
        total_neg,
        groups=groups,
        log_loss_sum=log_loss_sum,
        brier_sum=brier_sum,
        n=len(scores),
    )
    json.dumps(report, allow_nan=False)
    pooled = binary_metrics_from_histograms(*score_histograms(scores, labels)).as_dict()
    for key in ("accuracy", "precision", "recall", "f1", "specificity", "auc"):
        assert report[key] == pytest.approx(pooled[key], abs=1e-12), key
    assert report["n"] == len(scores)
    assert report["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=0.005)
    assert report["average_precision"] == pytest.approx(
        average_precision_score(labels, scores), abs=0.005
    )
    assert report["brier"] == pytest.approx(brier_score_loss(labels, scores), rel=1e-9)
    assert report["log_loss"] == pytest.approx(log_loss(labels, scores), rel=1e-9)
    assert report["ece"] == pytest.approx(_direct_ece(scores, labels, 10), abs=0.01)
    fairness = _direct_fairness(scores, labels, sex, 0.5)
    for key, value in fairness.items():
        assert report["fairness"][key] == pytest.approx(value, abs=1e-12), key
    assert len(report["calibration"]["counts"]) == 10


def test_summarise_downsamples_the_roc_curve_keeping_its_ends() -> None:
    scores, labels = _random_predictions(11, n=20000)
    pos, neg = score_histograms(scores, labels)
    sums = _sums(scores, labels)
    report = summarise(
        pos,
        neg,
        groups=None,
        log_loss_sum=sums["log_loss_sum"],
        brier_sum=sums["brier_sum"],
        n=len(scores),
        threshold=0.4,
    )
    fpr, tpr = report["roc"]["fpr"], report["roc"]["tpr"]
    assert 2 <= len(fpr) <= MAX_CURVE_POINTS and len(fpr) == len(tpr)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert report["fairness"] is None
    assert report["threshold"] == 0.4
    expected = binary_metrics_from_histograms(pos, neg, threshold=0.4)
    assert report["recall"] == pytest.approx(expected.recall)


def test_summarise_keeps_short_curves_whole_without_repeated_points() -> None:
    pos, neg = np.array([0, 1, 0, 2]), np.array([2, 0, 0, 1])
    report = summarise(pos, neg, groups={}, log_loss_sum=1.0, brier_sum=0.5, n=6)
    assert report["roc"] == {"fpr": [0.0, 1 / 3, 1 / 3, 1.0], "tpr": [0.0, 2 / 3, 1.0, 1.0]}
    assert report["fairness"] is None


def test_summarise_of_empty_histograms_reports_undefined_values_as_none() -> None:
    empty = np.zeros(BINS, dtype=np.int64)
    report = summarise(
        empty,
        empty,
        groups={"a": (empty, empty), "b": (empty, empty)},
        log_loss_sum=0.0,
        brier_sum=0.0,
        n=0,
    )
    json.dumps(report, allow_nan=False)
    for key in ("accuracy", "auc", "average_precision", "brier", "log_loss", "ece"):
        assert report[key] is None, key
    assert report["roc"] == {"fpr": [], "tpr": []}
    assert report["fairness"]["equalized_odds_difference"] is None
    assert report["fairness"]["groups"]["a"]["selection_rate"] is None


def test_summarise_with_one_class_reports_no_auc_or_curve() -> None:
    pos = np.zeros(10, dtype=np.int64)
    neg = np.array([1, 2, 0, 0, 0, 3, 0, 0, 0, 1])
    report = summarise(pos, neg, groups=None, log_loss_sum=2.0, brier_sum=1.0, n=7)
    assert report["auc"] is None and report["average_precision"] is None
    assert report["roc"] == {"fpr": [], "tpr": []}
    assert report["specificity"] == pytest.approx(3 / 7)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n": 5}, "n"),
        ({"n": -1}, "n"),
        ({"threshold": 0.55}, "threshold"),
        ({"brier_sum": 9.0}, "brier_sum"),
        ({"log_loss_sum": -1.0}, "log_loss_sum"),
    ],
)
def test_summarise_rejects_inconsistent_inputs(changes: dict, message: str) -> None:
    pos, neg = np.array([0, 1, 0, 2]), np.array([2, 0, 0, 1])
    kwargs = {"groups": None, "log_loss_sum": 1.0, "brier_sum": 0.5, "n": 6, **changes}
    with pytest.raises(TesseraError, match=f"^config_invalid: {message}"):
        summarise(pos, neg, **kwargs)
