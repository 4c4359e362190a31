"""Behaviour of the evaluation curves and calibration from summed histograms: ROC and PR
curves, average precision, calibration bins and ECE, Brier score and log loss, checked on
raw scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import ErrorCode, TesseraError
from common.evaluation import (
    CalibrationResult,
    average_precision_from_histograms,
    brier_from_sum,
    calibration_from_histograms,
    log_loss_from_sum,
    pr_curve_from_histograms,
    roc_curve_from_histograms,
)
from common.metrics import (
    auc_from_histograms,
    score_histograms,
)
from tests.common.evaluation_reference import BINS
from tests.common.evaluation_reference import direct_ece as _direct_ece
from tests.common.evaluation_reference import random_predictions as _random_predictions


@pytest.fixture(scope="module")
def breast_cancer_predictions() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05)).fit(X_train, y_train)
    return model.predict_proba(X_test)[:, 1], y_test


def _binned(scores: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Raw scores replaced by their bin's lower edge: the histogram's view of them."""
    return np.minimum(np.floor(scores * bins), bins - 1) / bins


# ---------------------------------------------------------------- ROC and PR curves


def test_roc_curve_has_a_point_per_bin_edge_matching_hand_counts() -> None:
    pos = np.array([1, 0, 2, 1])
    neg = np.array([2, 1, 1, 0])
    fpr, tpr, thresholds = roc_curve_from_histograms(pos, neg)
    assert thresholds.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert fpr.tolist() == [0.0, 0.0, 0.25, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.25, 0.75, 0.75, 1.0]


def test_roc_curve_area_is_the_histogram_auc_and_the_sklearn_auc_of_binned_scores(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    pos, neg = score_histograms(scores, labels)
    fpr, tpr, thresholds = roc_curve_from_histograms(pos, neg)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auc_from_histograms(pos, neg), abs=1e-12)
    assert area == pytest.approx(roc_auc_score(labels, _binned(scores)), abs=1e-12)
    assert np.all(np.diff(thresholds) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_roc_curve_contains_every_sklearn_point_of_binned_scores() -> None:
    scores, labels = _random_predictions(3)
    pos, neg = score_histograms(scores, labels)
    fpr, tpr, _ = roc_curve_from_histograms(pos, neg)
    ours = set(zip(np.round(fpr, 12), np.round(tpr, 12)))
    sk_fpr, sk_tpr, _ = roc_curve(labels, _binned(scores), drop_intermediate=False)
    assert set(zip(np.round(sk_fpr, 12), np.round(sk_tpr, 12))) <= ours


def test_pr_curve_starts_at_full_precision_and_skips_edges_with_nothing_above() -> None:
    pos = np.array([1, 0, 2, 0])
    neg = np.array([2, 1, 1, 0])
    precision, recall, thresholds = pr_curve_from_histograms(pos, neg)
    assert thresholds.tolist() == [1.0, 0.5, 0.25, 0.0]
    assert precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5, 3 / 7])
    assert recall.tolist() == pytest.approx([0.0, 2 / 3, 2 / 3, 1.0])
    ap = average_precision_from_histograms(pos, neg)
    assert ap == pytest.approx(2 / 3 * 2 / 3 + 0 * 0.5 + 1 / 3 * 3 / 7)


def test_average_precision_equals_sklearn_on_binned_scores_exactly() -> None:
    scores, labels = _random_predictions(7)
    pos, neg = score_histograms(scores, labels)
    expected = average_precision_score(labels, _binned(scores))
    assert average_precision_from_histograms(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_average_precision_agrees_with_sklearn_on_real_predictions(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    pos, neg = score_histograms(scores, labels)
    expected = average_precision_score(labels, scores)
    assert abs(average_precision_from_histograms(pos, neg) - expected) < 0.005


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_agrees_with_sklearn_on_random_predictions(seed: int) -> None:
    scores, labels = _random_predictions(seed)
    pos, neg = score_histograms(scores, labels)
    expected = average_precision_score(labels, scores)
    assert abs(average_precision_from_histograms(pos, neg) - expected) < 0.005


def test_curves_without_one_class_are_nan_without_warnings() -> None:
    pos = np.zeros(10, dtype=np.int64)
    neg = np.array([0, 3, 0, 0, 1, 0, 0, 0, 0, 2])
    fpr, tpr, _ = roc_curve_from_histograms(pos, neg)
    assert np.isnan(tpr).all() and fpr[-1] == 1.0
    precision, recall, _ = pr_curve_from_histograms(pos, neg)
    assert np.isnan(recall).all() and precision[0] == 1.0 and (precision[1:] == 0).all()
    assert math.isnan(average_precision_from_histograms(pos, neg))
    fpr, tpr, _ = roc_curve_from_histograms(pos, pos)
    assert np.isnan(fpr).all() and np.isnan(tpr).all()


def test_curves_accept_unsigned_counts_as_sent_on_the_wire() -> None:
    pos = np.array([1, 0, 2, 1], dtype=np.uint64)
    neg = np.array([2, 1, 1, 0], dtype=np.uint64)
    fpr, tpr, _ = roc_curve_from_histograms(pos, neg)
    assert fpr.tolist() == [0.0, 0.0, 0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    ("pos", "neg"),
    [
        (np.array([1, 2]), np.array([1])),
        (np.array([], dtype=int), np.array([], dtype=int)),
        (np.array([1, -1]), np.array([0, 0])),
        (np.array([1.5, 0.0]), np.array([0.0, 0.0])),
        (np.array([[1, 2]]), np.array([[1, 2]])),
    ],
)
def test_curves_reject_malformed_histograms(pos: np.ndarray, neg: np.ndarray) -> None:
    for function in (
        roc_curve_from_histograms,
        pr_curve_from_histograms,
        average_precision_from_histograms,
        calibration_from_histograms,
    ):
        with pytest.raises(TesseraError) as caught:
            function(pos, neg)
        assert caught.value.code is ErrorCode.CONFIG_INVALID
        assert "pos, neg" in caught.value.message


# ---------------------------------------------------------------- calibration


def test_calibration_uses_fine_bin_midpoints_as_scores() -> None:
    pos = np.array([0, 1, 0, 3])
    neg = np.array([2, 1, 0, 1])
    result = calibration_from_histograms(pos, neg, n_bins=2)
    assert isinstance(result, CalibrationResult)
    assert result.bin_edges.tolist() == [0.0, 0.5, 1.0]
    assert result.counts.tolist() == [4, 4]
    assert result.mean_predicted.tolist() == pytest.approx([(2 * 0.125 + 2 * 0.375) / 4, 0.875])
    assert result.observed_rate.tolist() == pytest.approx([0.25, 0.75])
    expected = (4 * abs(0.25 - 0.25) + 4 * abs(0.75 - 0.875)) / 8
    assert result.ece == pytest.approx(expected)


def test_calibration_matches_raw_scores_and_sklearn_calibration_curve(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    pos, neg = score_histograms(scores, labels)
    result = calibration_from_histograms(pos, neg, n_bins=10)
    assert abs(result.ece - _direct_ece(scores, labels, 10)) < 0.0005 + 1e-12
    raw_counts = np.bincount(np.minimum(np.floor(scores * 10).astype(int), 9), minlength=10)
    assert result.counts.tolist() == raw_counts.tolist()
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10)
    filled = result.counts > 0
    assert result.observed_rate[filled] == pytest.approx(prob_true, abs=1e-12)
    assert np.abs(result.mean_predicted[filled] - prob_pred).max() <= 0.0005 + 1e-12
    assert np.isnan(result.mean_predicted[~filled]).all()


@pytest.mark.parametrize(("seed", "n_bins"), [(0, 10), (1, 10), (2, 20), (3, 15), (4, 7)])
def test_ece_agrees_with_direct_computation_on_random_scores(seed: int, n_bins: int) -> None:
    scores, labels = _random_predictions(seed)
    pos, neg = score_histograms(scores, labels)
    result = calibration_from_histograms(pos, neg, n_bins=n_bins)
    assert abs(result.ece - _direct_ece(scores, labels, n_bins)) < 0.01
    assert result.counts.sum() == len(scores)


def test_calibration_of_empty_histograms_is_undefined() -> None:
    empty = np.zeros(100, dtype=np.int64)
    result = calibration_from_histograms(empty, empty)
    assert math.isnan(result.ece)
    assert result.counts.tolist() == [0] * 10
    assert result.as_dict()["ece"] is None
    assert result.as_dict()["mean_predicted"] == [None] * 10


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_calibration_rejects_bad_bin_counts(n_bins: object) -> None:
    pos, neg = np.ones(10, dtype=int), np.ones(10, dtype=int)
    with pytest.raises(TesseraError, match="n_bins"):
        calibration_from_histograms(pos, neg, n_bins=n_bins)  # type: ignore[arg-type]


def test_brier_and_log_loss_from_sums_equal_sklearn(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    brier_sum = float(np.sum((scores - labels) ** 2))
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    log_loss_sum = float(-np.sum(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    n = len(labels)
    assert brier_from_sum(brier_sum=brier_sum, n=n) == pytest.approx(
        brier_score_loss(labels, scores), rel=1e-12
    )
    assert log_loss_from_sum(log_loss_sum=log_loss_sum, n=n) == pytest.approx(
        log_loss(labels, scores), rel=1e-9
    )


def test_means_from_sums_without_rows_are_nan() -> None:
    assert math.isnan(brier_from_sum(brier_sum=0.0, n=0))
    assert math.isnan(log_loss_from_sum(log_loss_sum=0.0, n=0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"brier_sum": -1.0, "n": 3}, "brier_sum"),
        ({"brier_sum": 4.0, "n": 3}, "brier_sum"),
        ({"brier_sum": math.nan, "n": 3}, "brier_sum"),
        ({"brier_sum": 1.0, "n": -1}, "n"),
        ({"brier_sum": 1.0, "n": 2.0}, "n"),
    ],
)
def test_brier_from_sum_rejects_impossible_sums(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(TesseraError, match=f"^config_invalid: {name}"):
        brier_from_sum(**kwargs)  # type: ignore[arg-type]


def test_log_loss_from_sum_rejects_negative_or_infinite_sums() -> None:
    with pytest.raises(TesseraError, match="log_loss_sum"):
        log_loss_from_sum(log_loss_sum=-0.5, n=2)
    with pytest.raises(TesseraError, match="log_loss_sum"):
        log_loss_from_sum(log_loss_sum=math.inf, n=2)
