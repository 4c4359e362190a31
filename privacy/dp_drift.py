"""The drift release under differential privacy: per-feature histograms on public bins.

A site that allows it answers a coordinator's drift request (a plan with ``[drift]``) with
one histogram per feature of its newest dataset version: ``bins`` equal bins over the
feature's declared range (the plan's data dictionary, public), values outside the range
counted in the first or last bin. The bins are fixed by the approved plan before any data is
seen, so they reveal nothing.

With ``[drift] scores = true``, a site that kept the study's final model adds one more
histogram to the same release: the model's scores on the same rows, on ``bins`` equal bins
over [0, 1] (also public). It is the last row of the release (:data:`SCORES_METRIC` in the
reply says it is there); a site without the model answers with the features only.

**Sensitivity.** Each histogram is a partition of the rows: adding or removing one row
changes exactly one of its cells by one, an L2 change of 1 (the ledger's neighbouring
relation is add/remove of one row, as for every other release). Over the ``H`` histograms of
one release (``F`` features, plus one for the scores) the row changes ``H`` cells by one
each, an L2 change of ``sqrt(H)``. The site adds Gaussian noise of standard deviation
``noise_multiplier`` to every cell (CSPRNG, :mod:`privacy.secure_noise`) and rounds to whole
numbers: ``H`` Gaussian mechanisms of sensitivity 1 and noise multiplier ``noise_multiplier``,
recorded in the ledger as one ``GaussianRelease(noise_multiplier, count=H)`` (the same as one
Gaussian mechanism of sensitivity ``sqrt(H)`` with noise multiplier
``noise_multiplier / sqrt(H)``). The row count, the shares and every PSI the coordinator
computes from the noisy cells (summed across sites or not) are post-processing and cost
nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan
from privacy.mechanisms import GaussianRelease, check_noise_multiplier
from privacy.secure_noise import SecureGaussian, new_key


@dataclass(frozen=True)
class DriftBins:
    """Each feature's equal bins over its declared range (public, from the plan)."""

    lows: np.ndarray
    highs: np.ndarray
    bins: int

    @classmethod
    def of(cls, lows: Sequence[float], highs: Sequence[float], *, bins: int) -> DriftBins:
        lo, hi = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"bins: must be an integer >= 2, "
                                                         f"got {bins!r}")
        if lo.shape != hi.shape or lo.ndim != 1 or not np.all(np.isfinite(lo)) \
                or not np.all(np.isfinite(hi)) or not np.all(hi > lo):
            raise TesseraError(ErrorCode.PLAN_INVALID,
                               "drift bins: every feature needs a finite range with max > min")
        return cls(lows=lo, highs=hi, bins=bins)

    @property
    def features(self) -> int:
        return int(self.lows.size)

    def edges(self, feature: int) -> np.ndarray:
        """The ``bins + 1`` edges of one feature's bins."""
        return np.linspace(self.lows[feature], self.highs[feature], self.bins + 1)


#: Reply metric: 1 when the release's last histogram is the model's scores.
SCORES_METRIC = "drift_scores"


@dataclass(frozen=True)
class WatchedFeatures:
    """The features a plan's ``[drift]`` watches: names, column indices, and their bins;
    ``scores`` when the plan also asks for the final model's score histogram."""

    names: tuple[str, ...]
    columns: tuple[int, ...]
    bins: DriftBins
    scores: bool = False

    def release_bins(self, *, with_scores: bool) -> DriftBins:
        """The bins of one release: each watched feature's, then (``with_scores``) the
        scores' ``bins`` equal bins over [0, 1]."""
        if not with_scores:
            return self.bins
        return DriftBins.of([*self.bins.lows, 0.0], [*self.bins.highs, 1.0],
                            bins=self.bins.bins)


def watched_features(plan: StudyPlan) -> WatchedFeatures:
    """The plan's drift features and public bins; PLAN_INVALID without ``[drift]``."""
    if plan.drift is None:
        raise TesseraError(ErrorCode.PLAN_INVALID, f"study '{plan.name}': the plan declares "
                           "no [drift] release")
    features = list(plan.dataset.features)
    names = tuple(plan.drift.features or features)
    columns = plan.dataset.columns or {}
    lows = [columns[n].min if n in columns else None for n in names]
    highs = [columns[n].max if n in columns else None for n in names]
    if any(v is None for v in (*lows, *highs)):
        raise TesseraError(ErrorCode.PLAN_INVALID,
                           "[drift] needs a declared min and max for every watched feature")
    return WatchedFeatures(names=names, columns=tuple(features.index(n) for n in names),
                           bins=DriftBins.of([float(v) for v in lows if v is not None],
                                             [float(v) for v in highs if v is not None],
                                             bins=plan.drift.bins),
                           scores=plan.drift.scores)


def histograms(X: np.ndarray, bins: DriftBins) -> np.ndarray:
    """Exact counts, shape (features, bins): each row in one bin of every feature."""
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != bins.features or not np.isfinite(rows).all():
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"drift: expected finite rows of {bins.features} features")
    scaled = (rows - bins.lows) / (bins.highs - bins.lows) * bins.bins
    index = np.clip(np.floor(scaled), 0, bins.bins - 1).astype(np.int64)
    out = np.zeros((bins.features, bins.bins), dtype=np.int64)
    for feature in range(bins.features):
        out[feature] = np.bincount(index[:, feature], minlength=bins.bins)
    return out


def noisy_histograms(X: np.ndarray, bins: DriftBins, *, noise_multiplier: float,
                     key: bytes | None = None) -> np.ndarray:
    """The release: every cell plus Gaussian noise (std ``noise_multiplier``), rounded."""
    check_noise_multiplier(noise_multiplier)
    exact = histograms(X, bins).astype(np.float64)
    noise = SecureGaussian(key or new_key()).noise(exact.size, std=noise_multiplier)
    return np.rint(exact + noise.reshape(exact.shape)).astype(np.int64)


def drift_mechanism(*, noise_multiplier: float, features: int) -> GaussianRelease:
    """What one drift release is, for the ledger: ``features`` unit-sensitivity Gaussians
    (one per histogram of the release, the score histogram included)."""
    return GaussianRelease(noise_multiplier=noise_multiplier, count=features)


def cleaned_shares(cells: np.ndarray) -> np.ndarray:
    """A noisy histogram (or a sum of several) as shares: negative cells count as zero."""
    values = np.maximum(np.asarray(cells, dtype=np.float64), 0.0)
    total = values.sum()
    if total <= 0:
        raise TesseraError(ErrorCode.DATA_INVALID, "drift: a histogram holds no rows after noise")
    return values / total
