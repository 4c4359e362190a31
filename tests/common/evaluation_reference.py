"""Reference data of the evaluation tests: scored predictions drawn at random, and the
calibration and fairness figures computed directly on raw rows, to check the histogram maths
against."""

from __future__ import annotations

import numpy as np

from common.metrics import score_histograms

#: Bins of the score histograms the tests build (the sites' default).
BINS = 1000


def random_predictions(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of ``n`` rows, the positives' scores shifted up (seeded)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * labels)))
    return scores, labels


def direct_ece(scores: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """The expected calibration error over ``n_bins`` equal-width bins of raw scores."""
    index = np.minimum(np.floor(scores * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        rows = index == b
        if rows.any():
            total += rows.sum() * abs(labels[rows].mean() - scores[rows].mean())
    return total / len(scores)


def direct_fairness(
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


def group_histograms(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each group's positive and negative score histograms, keyed by the group's name."""
    return {
        str(g): score_histograms(scores[groups == g], labels[groups == g])
        for g in np.unique(groups)
    }
