"""Distribution-shift statistics: population stability index (PSI) and two-sample KS.

Pure functions over plain arrays, shared by the site's drift report
(:mod:`client_app.learning.drift`) and the prediction service's release guard
(``serving.guard``).

* :func:`psi` compares two binned distributions: ``sum((a - e) * ln(a / e))`` over the bins,
  with each share floored at :data:`PSI_FLOOR` so that an empty bin stays finite. Common
  reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major shift.
* :func:`quantile_edges` makes bins from the reference sample's deciles, so each bin holds
  about a tenth of the reference.
* :func:`ks_statistic` is the largest gap between the two empirical CDFs (0 to 1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from common.errors import ErrorCode, TesseraError

PSI_FLOOR = 1e-4
DEFAULT_BINS = 10
#: Fixed bins for scores in [0, 1].
SCORE_EDGES = np.linspace(0.0, 1.0, DEFAULT_BINS + 1)


def _sample(values: np.ndarray | list[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise TesseraError(ErrorCode.DATA_INVALID, f"{name}: needs at least one value")
    if not np.all(np.isfinite(array)):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{name}: contains non-finite values")
    return array


def quantile_edges(reference: np.ndarray | list[float], *, bins: int = DEFAULT_BINS
                   ) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped), for :func:`counts`."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "bins: must be an integer >= 2")
    sample = _sample(reference, "reference")
    inner = np.quantile(sample, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def counts(values: np.ndarray | list[float], inner_edges: np.ndarray) -> np.ndarray:
    """How many values fall in each bin: (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    sample = _sample(values, "values")
    index = np.searchsorted(np.asarray(inner_edges, dtype=np.float64), sample, side="right")
    return np.bincount(index, minlength=len(inner_edges) + 1).astype(np.float64)


def score_counts(scores: np.ndarray | list[float]) -> np.ndarray:
    """Counts of scores in ten equal bins over [0, 1] (the last bin includes 1)."""
    return counts(np.clip(_sample(scores, "scores"), 0.0, 1.0), SCORE_EDGES[1:-1])


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population stability index between two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or e.size < 2:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "psi: expected and actual must be count vectors of the same bins")
    if np.any(e < 0) or np.any(a < 0) or e.sum() <= 0 or a.sum() <= 0:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "psi: counts must be non-negative with a positive total")
    e_share = np.maximum(e / e.sum(), PSI_FLOOR)
    a_share = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def ks_statistic(reference: np.ndarray | list[float], current: np.ndarray | list[float]
                 ) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |F_ref(x) - F_cur(x)| over all x."""
    ref = np.sort(_sample(reference, "reference"))
    cur = np.sort(_sample(current, "current"))
    grid = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, grid, side="right") / ref.size
    cdf_cur = np.searchsorted(cur, grid, side="right") / cur.size
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of a KS statistic for samples of sizes ``n`` and ``m``
    (scipy's ``ks_2samp(method="asymp")``: Kolmogorov's distribution at the effective size
    ``n m / (n + m)``)."""
    if n < 1 or m < 1 or not math.isfinite(statistic) or not 0.0 <= statistic <= 1.0:
        raise TesseraError(ErrorCode.DATA_INVALID, "ks_p_value: needs sizes >= 1 and D in [0, 1]")
    effective = max(1, round(n * m / (n + m)))
    return float(min(max(stats.kstwo.sf(statistic, effective), 0.0), 1.0))
