"""Behaviour of metric maths from score histograms, checked against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import TesseraError
from common.metrics import (
    DEFAULT_BINS,
    BinaryMetrics,
    auc_from_histograms,
    binary_metrics_from_histograms,
    score_histograms,
)


@pytest.fixture(scope="module")
def breast_cancer_predictions() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05)).fit(X_train, y_train)
    return model.predict_proba(X_test)[:, 1], y_test


def _random_predictions(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * labels)))
    return scores, labels


def _sklearn_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predicted = (scores >= 0.5).astype(int)
    return {
        "n": float(len(labels)),
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, zero_division=0.0),
        "recall": recall_score(labels, predicted, zero_division=0.0),
        "f1": f1_score(labels, predicted, zero_division=0.0),
        "specificity": recall_score(labels, predicted, pos_label=0, zero_division=0.0),
        "auc": roc_auc_score(labels, scores),
    }


def test_scores_fall_in_floor_bins_with_one_in_the_last() -> None:
    scores = np.array([0.0, 0.0009, 0.001, 0.4999, 0.5, 0.9995, 1.0])
    labels = np.array([1, 0, 1, 0, 1, 0, 1])
    pos, neg = score_histograms(scores, labels)
    assert pos.dtype == np.int64 and pos.shape == (DEFAULT_BINS,)
    assert np.flatnonzero(pos).tolist() == [0, 1, 500, 999]
    assert np.flatnonzero(neg).tolist() == [0, 499, 999]
    assert pos[999] == 1 and neg[999] == 1


def test_histograms_reject_scores_outside_unit_interval() -> None:
    with pytest.raises(TesseraError):
        score_histograms(np.array([0.2, 1.2]), np.array([0, 1]))
    with pytest.raises(TesseraError):
        score_histograms(np.array([0.2, np.nan]), np.array([0, 1]))
    with pytest.raises(TesseraError):
        score_histograms(np.array([0.2, 0.3]), np.array([0, 2]))


def test_auc_matches_sklearn_on_real_breast_cancer_predictions(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    auc = auc_from_histograms(*score_histograms(scores, labels))
    assert abs(auc - roc_auc_score(labels, scores)) < 0.002


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_on_random_data(seed: int) -> None:
    scores, labels = _random_predictions(seed)
    auc = auc_from_histograms(*score_histograms(scores, labels))
    assert abs(auc - roc_auc_score(labels, scores)) < 0.002


def test_auc_is_exact_when_ties_only_occur_within_scores() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 500)
    scores = (rng.integers(0, 20, 500) + 0.5) / 20  # bin centres of 20 bins, many ties
    auc = auc_from_histograms(*score_histograms(scores, labels, bins=20))
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_golden_value_with_half_credit_for_shared_bin() -> None:
    pos = np.array([0, 1, 1])
    neg = np.array([1, 1, 0])
    # pairs (pos bin, neg bin): (1,0)=1, (1,1)=0.5, (2,0)=1, (2,1)=1 -> 3.5 / 4
    assert auc_from_histograms(pos, neg) == 0.875


def test_metrics_equal_sklearn_on_real_predictions(
    breast_cancer_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    scores, labels = breast_cancer_predictions
    metrics = binary_metrics_from_histograms(*score_histograms(scores, labels))
    expected = _sklearn_metrics(scores, labels)
    got = metrics.as_dict()
    assert got.keys() == expected.keys()
    for name in ("n", "accuracy", "precision", "recall", "f1", "specificity"):
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    assert abs(got["auc"] - expected["auc"]) < 0.002


@pytest.mark.parametrize("seed", [3, 4])
def test_metrics_equal_sklearn_on_random_data(seed: int) -> None:
    scores, labels = _random_predictions(seed)
    scores[:5] = 0.5  # scores exactly at the threshold count as positive on both sides
    metrics = binary_metrics_from_histograms(*score_histograms(scores, labels))
    expected = _sklearn_metrics(scores, labels)
    for name in ("accuracy", "precision", "recall", "f1", "specificity"):
        assert getattr(metrics, name) == pytest.approx(expected[name], abs=1e-12), name


def test_other_bin_edge_threshold_matches_sklearn() -> None:
    scores, labels = _random_predictions(5)
    metrics = binary_metrics_from_histograms(*score_histograms(scores, labels), threshold=0.25)
    predicted = (scores >= 0.25).astype(int)
    assert metrics.accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert metrics.recall == pytest.approx(recall_score(labels, predicted), abs=1e-12)


def test_summed_site_histograms_give_pooled_metrics() -> None:
    scores, labels = _random_predictions(6)
    parts = (slice(0, 700), slice(700, None))
    halves = [score_histograms(scores[part], labels[part]) for part in parts]
    pos = halves[0][0] + halves[1][0]
    neg = halves[0][1] + halves[1][1]
    pooled = binary_metrics_from_histograms(*score_histograms(scores, labels))
    assert binary_metrics_from_histograms(pos, neg) == pooled


def test_threshold_must_be_a_bin_edge() -> None:
    pos, neg = score_histograms(np.array([0.1, 0.9]), np.array([0, 1]))
    with pytest.raises(TesseraError) as caught:
        binary_metrics_from_histograms(pos, neg, threshold=0.0005)
    assert "threshold" in caught.value.message


def test_degenerate_counts_give_nan_auc_and_zero_ratios_without_warnings() -> None:
    only_negatives = score_histograms(np.array([0.1, 0.7]), np.array([0, 0]))
    metrics = binary_metrics_from_histograms(*only_negatives)
    assert math.isnan(metrics.auc)
    assert (metrics.precision, metrics.recall, metrics.f1) == (0.0, 0.0, 0.0)
    assert metrics.specificity == 0.5
    nothing_predicted = score_histograms(np.array([0.1, 0.2]), np.array([0, 1]))
    metrics = binary_metrics_from_histograms(*nothing_predicted)
    assert metrics.precision == 0.0 and metrics.accuracy == 0.5
    empty = binary_metrics_from_histograms(np.zeros(10, np.int64), np.zeros(10, np.int64))
    assert empty.n == 0 and math.isnan(empty.accuracy) and math.isnan(empty.auc)


def test_negative_counts_are_rejected() -> None:
    with pytest.raises(TesseraError):
        auc_from_histograms(np.array([1, -1]), np.array([1, 1]))


def test_as_dict_holds_every_field_as_float() -> None:
    metrics = BinaryMetrics(n=4, accuracy=1, precision=1, recall=1, f1=1, specificity=1, auc=1)
    as_dict = metrics.as_dict()
    assert as_dict == {"n": 4.0, **dict.fromkeys(list(as_dict)[1:], 1.0)}
    assert list(as_dict) == ["n", "accuracy", "precision", "recall", "f1", "specificity", "auc"]
    assert all(type(value) is float for value in as_dict.values())
