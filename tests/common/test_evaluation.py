"""Behaviour of the evaluation report maths from summed histograms, checked on raw scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_breast_cancer, load_diabetes
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
    MAX_CURVE_POINTS,
    CalibrationResult,
    FairnessResult,
    average_precision_from_histograms,
    brier_from_sum,
    calibration_from_histograms,
    group_fairness,
    log_loss_from_sum,
    pr_curve_from_histograms,
    roc_curve_from_histograms,
    summarise,
)
from common.metrics import (
    auc_from_histograms,
    binary_metrics_from_histograms,
    score_histograms,
)

BINS = 1000


@pytest.fixture(scope="module")
def breast_cancer_predictions() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05)).fit(X_train, y_train)
    return model.predict_proba(X_test)[:, 1], y_test


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


def _random_predictions(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * labels)))
    return scores, labels


def _binned(scores: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Raw scores replaced by their bin's lower edge: the histogram's view of them."""
    return np.minimum(np.floor(scores * bins), bins - 1) / bins


def _direct_ece(scores: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    index = np.minimum(np.floor(scores * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        rows = index == b
        if rows.any():
            total += rows.sum() * abs(labels[rows].mean() - scores[rows].mean())
    return total / len(scores)


def _direct_fairness(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float
) -> dict[str, float]:
    """Fairlearn's definitions, computed by hand on raw rows."""
    predicted = scores >= threshold
    selection, tpr, fpr = [], [], []
    for g in np.unique(groups):
        rows = groups == g
        selection.append(predicted[rows].mean())
        tpr.append(predicted[rows & (labels == 1)].mean())
        fpr.append(predicted[rows & (labels == 0)].mean())
    return {
        "demographic_parity_difference": max(selection) - min(selection),
        "demographic_parity_ratio": min(selection) / max(selection),
        "equalized_odds_difference": max(max(tpr) - min(tpr), max(fpr) - min(fpr)),
    }


def _group_histograms(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        str(g): score_histograms(scores[groups == g], labels[groups == g])
        for g in np.unique(groups)
    }


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
