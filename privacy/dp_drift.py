"""The drift release under differential privacy: per-feature histograms on public bins.

A site that allows it answers a coordinator's drift request (a plan with ``[drift]``) with
one histogram per feature of its newest dataset version: ``bins`` equal bins over the
feature's declared range (the plan's data dictionary, public), values outside the range
counted in the first or last bin. The bins are fixed by the approved plan before any data is
seen, so they reveal nothing.

**Sensitivity.** Each feature's histogram is a partition of the rows: adding or removing one
row changes exactly one of its cells by one, an L2 change of 1. Over the ``F`` features the
row changes ``F`` cells by one each, an L2 change of ``sqrt(F)``. The site adds Gaussian noise
of standard deviation ``noise_multiplier`` to every cell (CSPRNG, :mod:`privacy.secure_noise`)
and rounds to whole numbers: ``F`` Gaussian mechanisms of sensitivity 1 and noise multiplier
``noise_multiplier``, recorded in the ledger as one
``GaussianRelease(noise_multiplier, count=F)`` (the same as one Gaussian mechanism of
sensitivity ``sqrt(F)`` with noise multiplier ``noise_multiplier / sqrt(F)``). The row count,
the shares and every PSI the coordinator computes from the noisy cells (summed across sites or
not) are post-processing and cost nothing more.
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


@dataclass(frozen=True)
class WatchedFeatures:
    """The features a plan's ``[drift]`` watches: names, column indices, and their bins."""

    names: tuple[str, ...]
    columns: tuple[int, ...]
    bins: DriftBins


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
                                             bins=plan.drift.bins))


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
    """What one drift release is, for the ledger: ``features`` unit-sensitivity Gaussians."""
    return GaussianRelease(noise_multiplier=noise_multiplier, count=features)


def cleaned_shares(cells: np.ndarray) -> np.ndarray:
    """A noisy histogram (or a sum of several) as shares: negative cells count as zero."""
    values = np.maximum(np.asarray(cells, dtype=np.float64), 0.0)
    total = values.sum()
    if total <= 0:
        raise TesseraError(ErrorCode.DATA_INVALID, "drift: a histogram holds no rows after noise")
    return values / total
