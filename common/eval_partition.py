"""Evaluation counts rebuilt from per-group histograms: the form differentially private
evaluation releases take (privacy/dp_evaluation.py).

The groups of :func:`common.eval_counts.fixed_groups` other than ``""`` partition the rows,
so their histograms are all a site needs to release: the all-rows histogram is their sum,
the row count is its total, and the log-loss and Brier sums are taken at the bin midpoints.
Under DP the released cells are noisy (and may be negative before suppression); everything
here is post-processing of them. :func:`evaluation_bins` is the plan's number of score bins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.eval_counts import HeldOutCounts, Histograms
from common.metrics import DEFAULT_BINS
from common.plan import StudyPlan

#: Score bins of the shared histograms when the plan uses DP and does not say.
DP_DEFAULT_BINS = 10
#: Midpoint scores are kept this far from 0 and 1 in the log loss.
_LOG_EPS = 1e-12


def evaluation_bins(plan: StudyPlan) -> int:
    """The plan's score bins: ``[evaluation] bins``, else 10 with DP and 1000 without."""
    declared = plan.evaluation_policy.bins
    if declared is not None:
        return declared
    return DP_DEFAULT_BINS if plan.privacy.dp else DEFAULT_BINS


def partition(groups: Sequence[str]) -> tuple[str, ...]:
    """The groups whose histograms partition the rows: all but ``""`` (or ``""`` alone)."""
    parts = tuple(g for g in groups if g != "")
    return parts if parts else ("",)


def midpoint_sums(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Log-loss and Brier sums of a histogram, each row scored at its bin's midpoint."""
    p, q = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    mid = np.clip((np.arange(p.size) + 0.5) / p.size, _LOG_EPS, 1.0 - _LOG_EPS)
    log_loss = float(-(p @ np.log(mid) + q @ np.log(1.0 - mid)))
    brier = float(p @ (1.0 - mid) ** 2 + q @ mid**2)
    return log_loss, brier


def from_partition(parts: Histograms, groups: Sequence[str], *, bins: int) -> HeldOutCounts:
    """Counts in the plan's group layout from the partition's histograms (``parts`` keyed by
    :func:`partition` of ``groups``): the all-rows histogram is their sum."""
    keys = partition(groups)
    if set(parts) != set(keys):
        raise TesseraError(ErrorCode.DATA_INVALID, "histograms do not match the plan's groups")
    pos = sum((np.asarray(parts[g][0], dtype=np.int64) for g in keys), np.zeros(bins, np.int64))
    neg = sum((np.asarray(parts[g][1], dtype=np.int64) for g in keys), np.zeros(bins, np.int64))
    histograms: Histograms = {"": (pos, neg)}
    if keys != ("",):
        histograms.update({g: (np.asarray(parts[g][0], dtype=np.int64),
                               np.asarray(parts[g][1], dtype=np.int64)) for g in keys})
    log_loss, brier = midpoint_sums(pos, neg)
    return HeldOutCounts(bins=bins, histograms=histograms, log_loss_sum=log_loss,
                         brier_sum=brier, n=int(pos.sum() + neg.sum()))


def map_partition(counts: HeldOutCounts, groups: Sequence[str],
                  fn: Callable[[np.ndarray], np.ndarray]) -> HeldOutCounts:
    """Counts rebuilt after applying ``fn`` to every cell array of the partition."""
    parts = {g: (fn(counts.histograms[g][0]), fn(counts.histograms[g][1]))
             for g in partition(groups)}
    return from_partition(parts, groups, bins=counts.bins)


def rederive(counts: HeldOutCounts) -> HeldOutCounts:
    """``counts`` with the row count and the log-loss and Brier sums taken afresh from the
    all-rows histogram (after cells were merged or suppressed)."""
    pos, neg = counts.histograms[""]
    log_loss, brier = midpoint_sums(pos, neg)
    return HeldOutCounts(bins=counts.bins, histograms=counts.histograms, log_loss_sum=log_loss,
                         brier_sum=brier, n=int(np.sum(pos) + np.sum(neg)))
