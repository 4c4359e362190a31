"""Binary-classification metrics computed from score histograms (pure numpy).

Sites never share scores, only per-bin counts of positives and negatives over equal-width
bins of ``[0, 1]``. Counts from many sites add up, and everything here is computed from the
summed counts: ROC AUC (trapezoid over bin thresholds, so ties within a bin count one half)
and the confusion-matrix metrics at a threshold that is a bin edge. Degenerate cases (no
positives, no negatives, nothing predicted positive) give ``nan`` or ``0.0`` without warnings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError

DEFAULT_BINS = 1000


def _invalid(message: str) -> TesseraError:
    return TesseraError(ErrorCode.CONFIG_INVALID, message)


def score_histograms(
    scores: np.ndarray, labels: np.ndarray, *, bins: int = DEFAULT_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of positives and negatives per equal-width score bin over ``[0, 1]``.

    A score ``s`` falls in bin ``min(floor(s * bins), bins - 1)``, so 1.0 is in the last bin.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise _invalid("bins: must be a positive integer")
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels)
    if values.ndim != 1 or truth.shape != values.shape:
        raise _invalid("scores, labels: must be 1-D arrays of the same length")
    if not np.all(np.isfinite(values) & (values >= 0.0) & (values <= 1.0)):
        raise _invalid("scores: must be finite and within [0, 1]")
    if not np.isin(truth, (0, 1)).all():
        raise _invalid("labels: must be 0 or 1")
    index = np.minimum(np.floor(values * bins).astype(np.int64), bins - 1)
    positive = truth == 1
    pos = np.bincount(index[positive], minlength=bins).astype(np.int64)
    neg = np.bincount(index[~positive], minlength=bins).astype(np.int64)
    return pos, neg


def _counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pos)
    n = np.asarray(neg)
    if p.ndim != 1 or p.shape != n.shape or p.size == 0:
        raise _invalid("pos, neg: must be non-empty 1-D arrays of the same length")
    for name, counts in (("pos", p), ("neg", n)):
        if counts.dtype.kind not in "iu" and not np.array_equal(counts, np.round(counts)):
            raise _invalid(f"{name}: counts must be whole numbers")
        if (counts < 0).any():
            raise _invalid(f"{name}: counts must not be negative")
    return p.astype(np.float64), n.astype(np.float64)


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from per-bin counts; ``nan`` when either class is absent."""
    p, n = _counts(pos, neg)
    total_pos, total_neg = p.sum(), n.sum()
    if total_pos == 0 or total_neg == 0:
        return math.nan
    negatives_below = np.cumsum(n) - n
    wins = float(np.dot(p, negatives_below + 0.5 * n))
    return wins / (total_pos * total_neg)


@dataclass(frozen=True)
class BinaryMetrics:
    """Confusion-matrix metrics at one threshold, plus AUC."""

    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    specificity: float
    auc: float

    def as_dict(self) -> dict[str, float]:
        """All fields as floats, keyed by name."""
        return {key: float(value) for key, value in asdict(self).items()}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def binary_metrics_from_histograms(
    pos: np.ndarray, neg: np.ndarray, *, threshold: float = 0.5
) -> BinaryMetrics:
    """Metrics with bins at or above ``threshold`` predicted positive.

    ``threshold`` must be a bin edge (``k / bins``); then the result equals the metrics of
    the raw scores with prediction ``score >= threshold`` (up to the last bin, which holds 1.0).
    Ratios with an empty denominator are 0.0, as scikit-learn's ``zero_division`` default.
    """
    p, n = _counts(pos, neg)
    bins = p.size
    edge = threshold * bins
    if not math.isfinite(edge) or not 0 <= round(edge) <= bins or abs(edge - round(edge)) > 1e-9:
        raise _invalid(f"threshold: must be a bin edge k/{bins} within [0, 1]")
    k = round(edge)
    tp, fn = float(p[k:].sum()), float(p[:k].sum())
    fp, tn = float(n[k:].sum()), float(n[:k].sum())
    total = tp + fn + fp + tn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return BinaryMetrics(
        n=int(total),
        accuracy=_ratio(tp + tn, total) if total > 0 else math.nan,
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        specificity=_ratio(tn, tn + fp),
        auc=auc_from_histograms(pos, neg),
    )
