"""Evaluation report maths from summed score histograms (pure numpy).

Each site returns, for its held-out split, counts of positives and negatives per equal-width
score bin over ``[0, 1]`` (see :func:`common.metrics.score_histograms`), once for all rows and
once per sensitive-group value, plus the sums of per-row log loss and Brier terms. The
coordinator adds the counts across sites; this module derives the whole evaluation report
from those sums without ever seeing a score or a label:

* ROC and precision-recall curves with thresholds at bin edges, and step-wise average
  precision (scikit-learn's definition, with each bin acting as one group of tied scores);
* a reliability diagram and expected calibration error (ECE);
* group fairness at a threshold: selection rate, TPR and FPR per group, demographic parity
  difference and ratio, equalized odds difference;
* :func:`summarise`, which assembles a JSON-ready report dictionary.

Threshold rule (shared with :mod:`common.metrics`): at threshold ``k / bins`` the rows in
bins ``k`` and above are predicted positive. At ``1.0`` nothing is predicted positive; at
``0.0`` everything is.

Undefined quantities are ``nan`` in the arrays and dataclasses (never a warning) and become
``None`` in the dictionaries meant for reports (``as_dict`` and :func:`summarise`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.metrics import binary_metrics_from_histograms

#: Most points of the ROC curve kept in a :func:`summarise` report.
MAX_CURVE_POINTS = 101

Histogram = tuple[np.ndarray, np.ndarray]


def _invalid(message: str) -> TesseraError:
    return TesseraError(ErrorCode.CONFIG_INVALID, message)


def _counts(pos: Any, neg: Any, *, name: str = "pos, neg") -> tuple[np.ndarray, np.ndarray]:
    """Validated per-bin counts as float64 arrays (exact up to 2**53 rows)."""
    p = np.asarray(pos)
    n = np.asarray(neg)
    if p.ndim != 1 or p.shape != n.shape or p.size == 0:
        raise _invalid(f"{name}: must be non-empty 1-D arrays of the same length")
    for counts in (p, n):
        if counts.dtype.kind not in "iuf":
            raise _invalid(f"{name}: counts must be numbers")
        if counts.dtype.kind == "f" and not (
            np.isfinite(counts).all() and np.array_equal(counts, np.round(counts))
        ):
            raise _invalid(f"{name}: counts must be whole numbers")
        if counts.dtype.kind != "u" and (counts < 0).any():
            raise _invalid(f"{name}: counts must not be negative")
    return p.astype(np.float64), n.astype(np.float64)


def _edge_index(threshold: float, bins: int) -> int:
    edge = float(threshold) * bins
    if not math.isfinite(edge) or not 0 <= round(edge) <= bins or abs(edge - round(edge)) > 1e-9:
        raise _invalid(f"threshold: must be a bin edge k/{bins} within [0, 1]")
    return round(edge)


def _divide(numerator: np.ndarray | float, denominator: np.ndarray | float) -> Any:
    """Elementwise ``numerator / denominator`` with ``nan`` where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out if out.ndim else float(out)


def _above(counts: np.ndarray) -> np.ndarray:
    """Rows at or above each edge ``k / bins`` for ``k = bins, bins - 1, ..., 0``."""
    return np.concatenate(([0.0], np.cumsum(counts[::-1])))


def roc_curve_from_histograms(
    pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` with one point per bin edge, thresholds descending.

    The ``bins + 1`` points run from ``(0, 0)`` at threshold 1.0 to ``(1, 1)`` at 0.0; the
    trapezoid area under them is :func:`common.metrics.auc_from_histograms`. ``fpr`` (``tpr``)
    is all ``nan`` when there are no negatives (positives).
    """
    p, n = _counts(pos, neg)
    fpr = _divide(_above(n), n.sum())
    tpr = _divide(_above(p), p.sum())
    return fpr, tpr, np.arange(p.size, -1, -1) / p.size


def pr_curve_from_histograms(
    pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve ``(precision, recall, thresholds)``, thresholds descending.

    The first point is threshold 1.0 with nothing predicted positive, given precision 1.0 and
    recall 0.0 by scikit-learn's convention; the others are the bin edges below which at least
    one row is predicted positive (edges with nothing above them have no precision and are
    left out). ``recall`` is all ``nan`` when there are no positives.
    """
    p, n = _counts(pos, neg)
    tp, predicted = _above(p), _above(p + n)
    keep = predicted > 0
    keep[0] = True
    precision = _divide(tp, predicted)
    precision[0] = 1.0
    recall = _divide(tp, p.sum())
    if p.sum() > 0:
        recall[0] = 0.0
    return precision[keep], recall[keep], (np.arange(p.size, -1, -1) / p.size)[keep]


def average_precision_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """Step-wise average precision ``sum_k (R_k - R_{k-1}) P_k``, ``nan`` without positives.

    This is scikit-learn's ``average_precision_score`` with the scores of each bin treated as
    tied; with 1000 bins it agrees with the raw-score value to a few thousandths.
    """
    precision, recall, _ = pr_curve_from_histograms(pos, neg)
    if np.isnan(recall).any():
        return math.nan
    return float(np.sum(np.diff(recall) * precision[1:]))


@dataclass(frozen=True)
class CalibrationResult:
    """Reliability diagram over ``n_bins`` equal-width bins and its expected calibration error.

    ``mean_predicted`` and ``observed_rate`` are ``nan`` for empty bins; ``ece`` is ``nan``
    when there are no rows at all.
    """

    bin_edges: np.ndarray
    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    counts: np.ndarray
    ece: float

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats, with ``None`` for undefined values."""
        return {
            "bin_edges": _floats(self.bin_edges),
            "mean_predicted": _floats(self.mean_predicted),
            "observed_rate": _floats(self.observed_rate),
            "counts": [int(c) for c in self.counts],
            "ece": _float(self.ece),
        }


def calibration_from_histograms(
    pos: np.ndarray, neg: np.ndarray, *, n_bins: int = 10
) -> CalibrationResult:
    """Reliability diagram and ECE from fine score histograms.

    Midpoint approximation: the scores themselves are not shared, so every row of fine bin
    ``i`` is taken to score the bin's midpoint ``(i + 0.5) / bins``, and a fine bin belongs to
    the calibration bin holding its midpoint. Each estimated score is then off by at most half
    a fine bin (0.0005 at 1000 bins), and so is ECE; when ``n_bins`` divides the fine bin
    count, the rows fall in the same calibration bins as their raw scores would.

    ``ece = sum_b counts_b * |observed_rate_b - mean_predicted_b| / sum_b counts_b`` over the
    non-empty bins.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise _invalid("n_bins: must be a positive integer")
    p, n = _counts(pos, neg)
    fine = p.size
    midpoints = (np.arange(fine, dtype=np.float64) + 0.5) / fine
    coarse = np.minimum(np.floor(midpoints * n_bins).astype(np.int64), n_bins - 1)
    rows = p + n
    counts = np.bincount(coarse, weights=rows, minlength=n_bins)
    score_sums = np.bincount(coarse, weights=rows * midpoints, minlength=n_bins)
    positives = np.bincount(coarse, weights=p, minlength=n_bins)
    mean_predicted = _divide(score_sums, counts)
    observed_rate = _divide(positives, counts)
    filled = counts > 0
    gaps = np.abs(observed_rate[filled] - mean_predicted[filled])
    total = counts.sum()
    ece = float(np.dot(counts[filled], gaps) / total) if total > 0 else math.nan
    return CalibrationResult(
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
        mean_predicted=mean_predicted,
        observed_rate=observed_rate,
        counts=np.rint(counts).astype(np.int64),
        ece=ece,
    )


def _mean_from_sum(total: float, n: int, *, name: str, upper_per_row: float) -> float:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _invalid("n: must be a non-negative integer")
    value = float(total)
    if not math.isfinite(value) or value < 0:
        raise _invalid(f"{name}: must be a finite, non-negative number")
    if value > upper_per_row * int(n) * (1 + 1e-9):
        raise _invalid(f"{name}: must not exceed {upper_per_row:g} per row")
    return value / int(n) if n > 0 else math.nan


def brier_from_sum(*, brier_sum: float, n: int) -> float:
    """Brier score from the summed per-row ``(score - label)**2``; ``nan`` when ``n`` is 0.

    Histograms cannot give it exactly (the scores within a bin differ), so sites send the sum.
    """
    return _mean_from_sum(brier_sum, n, name="brier_sum", upper_per_row=1.0)


def log_loss_from_sum(*, log_loss_sum: float, n: int) -> float:
    """Mean log loss from the summed per-row log loss; ``nan`` when ``n`` is 0."""
    return _mean_from_sum(log_loss_sum, n, name="log_loss_sum", upper_per_row=math.inf)


@dataclass(frozen=True)
class GroupRates:
    """Rates of one sensitive group at the threshold; ``nan`` where undefined."""

    n: int
    selection_rate: float
    tpr: float
    fpr: float

    def as_dict(self) -> dict[str, Any]:
        """The rates as floats, ``None`` where undefined."""
        return {
            "n": self.n,
            "selection_rate": _float(self.selection_rate),
            "tpr": _float(self.tpr),
            "fpr": _float(self.fpr),
        }


@dataclass(frozen=True)
class FairnessResult:
    """Per-group rates and the disparities between groups at one threshold.

    Rule for undefined rates: a group without rows has no selection rate, a group without
    positives no TPR, a group without negatives no FPR. Each disparity is taken over the
    groups where its rate is defined, and is ``nan`` when fewer than two groups remain (a
    difference needs two groups to compare). ``equalized_odds_difference`` is the larger of
    the TPR and FPR ranges that are defined.
    """

    threshold: float
    groups: dict[str, GroupRates]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, with ``None`` for undefined values."""
        return {
            "threshold": float(self.threshold),
            "groups": {name: rates.as_dict() for name, rates in self.groups.items()},
            "demographic_parity_difference": _float(self.demographic_parity_difference),
            "demographic_parity_ratio": _float(self.demographic_parity_ratio),
            "equalized_odds_difference": _float(self.equalized_odds_difference),
        }


def _defined(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _spread(values: list[float]) -> float:
    defined = _defined(values)
    return max(defined) - min(defined) if len(defined) >= 2 else math.nan


def group_fairness(groups: Mapping[str, Histogram], *, threshold: float = 0.5) -> FairnessResult:
    """Fairness of predictions ``score >= threshold`` across sensitive groups.

    ``groups`` maps each group value to its ``(pos, neg)`` histograms, all with the same bin
    count; the all-rows histogram (group ``""``) does not belong here. ``selection_rate`` is
    predicted positive / n; ``demographic_parity_ratio`` is min / max selection rate, 1.0 when
    the largest is 0. See :class:`FairnessResult` for the rule on undefined rates.
    """
    if not isinstance(groups, Mapping) or not groups:
        raise _invalid("groups: must map at least one group name to (pos, neg) histograms")
    rates: dict[str, GroupRates] = {}
    sizes = set()
    for name, histograms in groups.items():
        if not isinstance(name, str) or not name:
            raise _invalid("groups: names must be non-empty strings ('' means all rows)")
        if not isinstance(histograms, tuple | list) or len(histograms) != 2:
            raise _invalid(f"groups[{name!r}]: must be a (pos, neg) pair")
        p, n = _counts(*histograms, name=f"groups[{name!r}]")
        sizes.add(p.size)
        if len(sizes) > 1:
            raise _invalid("groups: every group must have the same number of bins")
        k = _edge_index(threshold, p.size)
        tp, fp = p[k:].sum(), n[k:].sum()
        rows = p.sum() + n.sum()
        rates[name] = GroupRates(
            n=int(rows),
            selection_rate=_divide(tp + fp, rows),
            tpr=_divide(tp, p.sum()),
            fpr=_divide(fp, n.sum()),
        )
    selection = _defined([r.selection_rate for r in rates.values()])
    if len(selection) < 2:
        ratio = math.nan
    else:
        ratio = min(selection) / max(selection) if max(selection) > 0 else 1.0
    odds = _defined(
        [_spread([r.tpr for r in rates.values()]), _spread([r.fpr for r in rates.values()])]
    )
    return FairnessResult(
        threshold=float(threshold),
        groups=rates,
        demographic_parity_difference=_spread(selection),
        demographic_parity_ratio=ratio,
        equalized_odds_difference=max(odds) if odds else math.nan,
    )


def _float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _floats(values: np.ndarray) -> list[float | None]:
    return [_float(v) for v in values]


def _downsample(fpr: np.ndarray, tpr: np.ndarray, *, most: int) -> tuple[np.ndarray, np.ndarray]:
    """Curve points without repeats, thinned evenly to at most ``most`` (ends kept).

    An undefined curve (a class is absent) has no points.
    """
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return fpr[:0], tpr[:0]
    if fpr.size > 1:
        moved = np.concatenate(([True], (np.diff(fpr) != 0) | (np.diff(tpr) != 0)))
        moved[-1] = True
        fpr, tpr = fpr[moved], tpr[moved]
    if fpr.size > most:
        index = np.unique(np.rint(np.linspace(0, fpr.size - 1, most)).astype(np.int64))
        fpr, tpr = fpr[index], tpr[index]
    return fpr, tpr


def summarise(
    total_pos: np.ndarray,
    total_neg: np.ndarray,
    *,
    groups: Mapping[str, Histogram] | None,
    log_loss_sum: float,
    brier_sum: float,
    n: int,
    threshold: float = 0.5,
    calibration_bins: int = 10,
) -> dict[str, Any]:
    """The evaluation report from summed counts, as a JSON-ready dictionary.

    Keys: ``n``, ``threshold``, the confusion metrics of :mod:`common.metrics` (accuracy,
    precision, recall, f1, specificity, auc), ``average_precision``, ``brier``, ``log_loss``,
    ``ece``, ``fairness`` (:meth:`FairnessResult.as_dict`, or ``None`` without groups),
    ``roc`` (``{"fpr", "tpr"}`` with at most :data:`MAX_CURVE_POINTS` points, for plotting)
    and ``calibration`` (:meth:`CalibrationResult.as_dict`). Undefined values are ``None``.
    ``n`` must equal the number of rows in the histograms.
    """
    p, q = _counts(total_pos, total_neg, name="total_pos, total_neg")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _invalid("n: must be a non-negative integer")
    if int(n) != int(p.sum() + q.sum()):
        raise _invalid("n: must equal the number of rows in total_pos and total_neg")
    _edge_index(threshold, p.size)
    confusion = binary_metrics_from_histograms(p, q, threshold=threshold)
    calibration = calibration_from_histograms(p, q, n_bins=calibration_bins)
    fpr, tpr, _ = roc_curve_from_histograms(p, q)
    fpr, tpr = _downsample(fpr, tpr, most=MAX_CURVE_POINTS)
    fairness = group_fairness(groups, threshold=threshold).as_dict() if groups else None
    return {
        "n": int(n),
        "threshold": float(threshold),
        "accuracy": _float(confusion.accuracy),
        "precision": _float(confusion.precision),
        "recall": _float(confusion.recall),
        "f1": _float(confusion.f1),
        "specificity": _float(confusion.specificity),
        "auc": _float(confusion.auc),
        "average_precision": _float(average_precision_from_histograms(p, q)),
        "brier": _float(brier_from_sum(brier_sum=brier_sum, n=int(n))),
        "log_loss": _float(log_loss_from_sum(log_loss_sum=log_loss_sum, n=int(n))),
        "ece": _float(calibration.ece),
        "fairness": fairness,
        "roc": {"fpr": _floats(fpr), "tpr": _floats(tpr)},
        "calibration": calibration.as_dict(),
    }
